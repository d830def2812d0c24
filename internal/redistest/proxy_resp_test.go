package redistest

import (
	"slices"
	"strings"
	"testing"
)

// feedSplits feeds stream to a fresh scanner whole, byte by byte, and split
// at every point, and checks that each way finds the same frames.
func feedSplits(t *testing.T, requests bool, stream string, wantFrames int, wantNames []string) {
	t.Helper()
	run := func(how string, pieces []string) {
		t.Helper()
		s := respScanner{requests: requests}
		var frames int
		var names []string
		for _, p := range pieces {
			n, nn := s.feed([]byte(p))
			frames += n
			names = append(names, nn...)
		}
		if frames != wantFrames || (requests && !slices.Equal(names, wantNames)) {
			t.Errorf("%s: frames %d, names %q; want %d, %q", how, frames, names, wantFrames, wantNames)
		}
	}
	run("whole", []string{stream})
	bytewise := make([]string, len(stream))
	for i := range stream {
		bytewise[i] = stream[i : i+1]
	}
	run("byte by byte", bytewise)
	for i := 1; i < len(stream); i++ {
		run("split", []string{stream[:i], stream[i:]})
	}
}

func TestRESPScannerRequests(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		stream string
		frames int
		names  []string
	}{
		{"array", "*1\r\n$4\r\nping\r\n", 1, []string{"PING"}},
		{"pipelined", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n", 2, []string{"SET", "INCR"}},
		{"inline", "PING\r\nset k v\n", 2, []string{"PING", "SET"}},
		{"ignored by Redis", "\r\n  \r\n*0\r\n*-1\r\n", 0, nil},
		{"mixed", "PING\r\n*1\r\n$4\r\nPING\r\n", 2, []string{"PING", "PING"}},
		{"binary payload", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\n*1\r\n\r\n\r\n", 1, []string{"SET"}},
		{"long name", "*1\r\n$40\r\n" + strings.Repeat("x", 40) + "\r\n", 1, []string{strings.Repeat("X", maxNameKept)}},
		{"name not first", "*2\r\n*1\r\n$1\r\na\r\n$3\r\nGET\r\n", 1, []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			feedSplits(t, true, tc.stream, tc.frames, tc.names)
		})
	}
}

func TestRESPScannerLargeBulk(t *testing.T) {
	t.Parallel()
	v := strings.Repeat("v", 1<<20)
	stream := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048576\r\n" + v + "\r\n*1\r\n$4\r\nPING\r\n"
	s := respScanner{requests: true}
	var names []string
	for p := range slices.Chunk([]byte(stream), 1000) {
		_, nn := s.feed(p)
		names = append(names, nn...)
	}
	if !slices.Equal(names, []string{"SET", "PING"}) || len(s.line) != 0 {
		t.Fatalf("names %q, line %q", names, s.line)
	}
}

func TestRESPScannerReplies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		stream string
		frames int
	}{
		{"simple", "+OK\r\n-ERR no\r\n:12\r\n", 3},
		{"bulk", "$3\r\nfoo\r\n$0\r\n\r\n$-1\r\n$4\r\na\r\nb\r\n", 4},
		{"arrays", "*-1\r\n*0\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n", 3},
		{"resp3 scalars", "_\r\n,1.5\r\n#t\r\n(12345678901234567890\r\n!3\r\nerr\r\n=7\r\ntxt:abc\r\n", 6},
		{"resp3 aggregates", "%1\r\n+k\r\n*1\r\n+v\r\n~2\r\n+a\r\n+b\r\n%0\r\n", 3},
		{"push", ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n+OK\r\n", 2},
		{"attributes", "|1\r\n+ttl\r\n:3\r\n+attributed\r\n*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", 2},
		{"long simple string", "+" + strings.Repeat("s", 200) + "\r\n:1\r\n", 2},
		{"unparsable stops counting", ":1\r\n?x\r\n+OK\r\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			feedSplits(t, false, tc.stream, tc.frames, nil)
		})
	}
}
