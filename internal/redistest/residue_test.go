package redistest

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestClassifyName pins the names the residue checker recognises.
func TestClassifyName(t *testing.T) {
	for _, c := range []struct {
		key  string
		kind nameKind
		name string
	}{
		{"app:job", lockKey, "app:job"},
		{"app:job\x00fence{123}", counterKey, "app:job"},
		{"app:{t}job\x00fence", counterKey, "app:{t}job"},
		{"{42}\x00fence:s\x00app:a{b", counterKey, "app:a{b"},
		{"app:job\x00queue{123}", queueKey, "app:job"},
		{"app:{t}job\x00queue", queueKey, "app:{t}job"},
		{"{42}\x00queue:s\x00app:a{b", queueKey, "app:a{b"},
		{"leaselock\x00birth", markKey, ""},
		{"leaselock\x00repaired", markKey, ""},
		{"app:job\x00fence{x1}", unknownKey, ""},
		{"app:job\x00fence{}", unknownKey, ""},
		{"app:job\x00fencing", unknownKey, ""},
		{"{4x}\x00fence:s\x00k", unknownKey, ""},
		{"\x00fence", unknownKey, ""},
		{"{}\x00fence:s\x00k", unknownKey, ""},
		{"leaselock\x00other", unknownKey, ""},
	} {
		kind, name := classifyName(c.key)
		if kind != c.kind || name != c.name {
			t.Errorf("classifyName(%q) = %d, %q; want %d, %q", c.key, kind, name, c.kind, c.name)
		}
	}
}

// TestResidueViolations: each violation of O4 is reported, and what O4
// allows is not.
func TestResidueViolations(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	servers := []*Server{s}
	r := Residue{Match: "res:*", TTL: 200 * time.Millisecond}
	set := func(args ...string) {
		t.Helper()
		if err := s.Do(append([]string{"SET"}, args...)...).Error(); err != nil {
			t.Fatal(err)
		}
	}
	reset := func() {
		t.Helper()
		if err := s.FlushAll(); err != nil {
			t.Fatal(err)
		}
	}
	want := func(what string, err error, msg string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v, want an error with %q", what, err, msg)
		}
	}

	if err := r.Teardown(ctx, servers); err != nil {
		t.Errorf("empty node: %v", err)
	}

	// Allowed: keys of another namespace, marks, counters, a key held, a
	// key that expires within its TTL.
	set("other:k", "v")
	set("leaselock\x00birth", "1")
	set("res:k\x00fence{1}", "17")
	set("res:held", "v", "PX", "150")
	set("res:going", "v", "PX", "100")
	start := time.Now()
	if err := r.Check(ctx, servers, map[string]bool{"res:held": true}); err != nil {
		t.Errorf("Check of allowed keys: %v", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Errorf("Check returned after %v, before the key not held expired", d)
	}
	if err := r.Teardown(ctx, servers); err != nil {
		t.Errorf("Teardown once the keys expired: %v", err)
	}
	reset()

	set("res:k", "v")
	want("a key without expiry", r.Check(ctx, servers, nil), "has no expiry")
	reset()

	set("res:k", "v", "PX", "5000")
	want("a PTTL above the TTL", r.Check(ctx, servers, map[string]bool{"res:k": true}), "above the TTL")
	reset()

	set("res:k\x00fence{1}", "1")
	set("res:k\x00fence", "2")
	want("two counters for one lock", r.Check(ctx, servers, nil), "has 2 fencing counters")
	reset()

	set("res:k\x00fence{1}", "x")
	want("a counter that is not a number", r.Check(ctx, servers, nil), "is not a number")
	reset()

	set("res:k\x00what", "1")
	want("an unknown internal name", r.Check(ctx, servers, nil), "unknown internal key")
	reset()

	// A key that something keeps alive, as a leaked renewal would.
	set("res:k", "v", "PX", "40")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				s.Do("PEXPIRE", "res:k", "100")
			}
		}
	})
	err := r.Check(ctx, servers, nil)
	close(stop)
	wg.Wait()
	want("a key kept alive", err, "still there")
	reset()

	// A key set by a late command once the first scan has passed: only the
	// second scan of Teardown can see it. The late command waits for the
	// node to count the SCAN; Check is then still waiting for res:k1.
	set("res:k1", "v", "PX", "100")
	scans := infoCalls(t, s, "scan")
	late := make(chan error, 1)
	go func() {
		for infoCalls(t, s, "scan") == scans {
			time.Sleep(time.Millisecond) // polls a server, which cannot signal
		}
		late <- s.Do("SET", "res:k2", "v", "PX", "150").Error()
	}()
	err = r.Teardown(ctx, servers)
	if lerr := <-late; lerr != nil {
		t.Fatal(lerr)
	}
	want("a key set after the first scan", err, `"res:k2"`)
	if err != nil && strings.Contains(err.Error(), `"res:k1"`) {
		t.Errorf("res:k1, which expired in time, reported: %v", err)
	}
}

// infoCalls returns how many times s ran the command cmd.
func infoCalls(t *testing.T, s *Server, cmd string) int64 {
	t.Helper()
	info, err := s.Do("INFO", "commandstats").ToString()
	if err != nil {
		t.Error(err)
		return -1
	}
	for l := range strings.Lines(info) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), "cmdstat_"+cmd+":calls=")
		if ok {
			n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest+",", ',')], 10, 64)
			return n
		}
	}
	return 0
}
