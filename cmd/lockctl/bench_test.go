package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leaselock/lock"
)

func init() {
	backends["test-stuck"] = func(*backendFlags) (lock.Backend, error) { return stuckBackend{}, nil }
	backends["test-decreasing"] = func(*backendFlags) (lock.Backend, error) {
		return &decreasingBackend{next: 1 << 20, held: make(map[string]uint64)}, nil
	}
}

// benchJSON runs lockctl bench -json with args and decodes its result.
func benchJSON(t *testing.T, ctx context.Context, args ...string) (code int, res benchResult, stderr string) {
	t.Helper()
	code, stdout, stderr := runLockctl(t, ctx, append([]string{"bench", "-json"}, args...)...)
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("lockctl bench -json %q: %v; stdout:\n%s\nstderr:\n%s", args, err, stdout, stderr)
	}
	return code, res, stderr
}

func TestBenchOps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		ops  int64
	}{
		{"defaults", []string{"-ops", "2000"}, 2000},
		{"many keys", []string{"-ops", "2000", "-keys", "8", "-workers", "16"}, 2000},
		{"hold", []string{"-ops", "300", "-keys", "4", "-hold", "20us"}, 300},
		{"one worker", []string{"-ops", "500", "-workers", "1"}, 500},
		{"not renewed", []string{"-ops", "1000", "-renew=false", "-ttl", "2s"}, 1000},
		{"more workers than ops", []string{"-ops", "3", "-workers", "10"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, r, stderr := benchJSON(t, t.Context(), tt.args...)
			if code != 0 || !r.OK || len(r.Failures) != 0 || r.Error != "" {
				t.Errorf("bench %q: exit %d, ok %v, failures %q, error %q; stderr:\n%s", tt.args, code, r.OK, r.Failures, r.Error, stderr)
			}
			if r.Acquisitions != tt.ops || r.Wait.Count != uint64(tt.ops) {
				t.Errorf("bench %q: acquisitions %d, waits %d; want %d", tt.args, r.Acquisitions, r.Wait.Count, tt.ops)
			}
			if r.HoldersMax != 1 || r.LostUpdates != 0 || r.TokenViolations != 0 || r.ReleaseErrors != 0 {
				t.Errorf("bench %q: holders max %d, lost %d, token violations %d, release errors %d; want 1, 0, 0, 0",
					tt.args, r.HoldersMax, r.LostUpdates, r.TokenViolations, r.ReleaseErrors)
			}
			if r.Handoff.Count > uint64(r.Acquisitions) {
				t.Errorf("bench %q: %d hand-offs for %d acquisitions", tt.args, r.Handoff.Count, r.Acquisitions)
			}
			if r.Workers == 1 && r.Handoff.Count != 0 {
				t.Errorf("bench %q: %d hand-offs with one worker, want 0", tt.args, r.Handoff.Count)
			}
			for _, s := range []summary{r.Wait, r.Handoff} {
				if s.P50 > s.P99 || s.P99 > s.Max || s.Max < 0 {
					t.Errorf("bench %q: percentiles out of order: %+v", tt.args, s)
				}
			}
			if r.Hold > 0 && r.Elapsed < time.Duration(tt.ops)*r.Hold/time.Duration(r.Keys) {
				t.Errorf("bench %q: elapsed %v, less than ops*hold/keys", tt.args, r.Elapsed)
			}
			if r.PerSecond <= 0 {
				t.Errorf("bench %q: %v acquisitions/s", tt.args, r.PerSecond)
			}
		})
	}
}

func TestBenchTable(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runLockctl(t, t.Context(), "bench", "-ops", "500", "-keys", "2")
	if code != 0 || stderr != "" {
		t.Errorf("bench: exit %d, stderr %q; want 0 and none", code, stderr)
	}
	for _, re := range []string{
		`(?m)^backend +memory$`,
		`(?m)^keys +2$`,
		`(?m)^acquisitions +500$`,
		`(?m)^acquisitions/s +\d+$`,
		`(?m)^wait p50 +\d+(\.\d+)?(ns|µs|ms|s)$`,
		`(?m)^handoff max +\d+(\.\d+)?(ns|µs|ms|s)$`,
		`(?m)^holders-at-once max +1 +ok$`,
		`(?m)^lost updates +0 +ok$`,
		`(?m)^token order violations +0 +ok$`,
	} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("bench output does not match %s:\n%s", re, stdout)
		}
	}
	// The values of all rows start in one column.
	col := -1
	for line := range strings.Lines(stdout) {
		i := strings.Index(line, "  ")
		j := i + len(line[i:]) - len(strings.TrimLeft(line[i:], " "))
		if col >= 0 && j != col {
			t.Errorf("value of %q starts at column %d, want %d", line, j, col)
		}
		col = j
		if strings.TrimRight(line, " \n") != strings.TrimSuffix(line, "\n") {
			t.Errorf("line %q ends in spaces", line)
		}
	}
}

func TestBenchFlagErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want []string // parts of stderr
	}{
		{[]string{"-workers", "0"}, []string{"invalid -workers 0", "at least 1"}},
		{[]string{"-workers", "-3"}, []string{"invalid -workers -3"}},
		{[]string{"-backend", "nope"}, []string{`invalid -backend "nope"`, "unknown backend", "memory"}},
		{[]string{"-keys", "0"}, []string{"invalid -keys 0"}},
		{[]string{"-ops", "-1"}, []string{"invalid -ops -1"}},
		{[]string{"-duration", "0s"}, []string{"invalid -duration 0s"}},
		{[]string{"-ops", "10", "-duration", "-1s"}, []string{"invalid -duration -1s"}},
		{[]string{"-hold", "-1ms"}, []string{"invalid -hold -1ms"}},
		{[]string{"-ttl", "0s"}, []string{"invalid -ttl 0s"}},
		{[]string{"-ttl", "1ms"}, []string{"invalid -ttl 1ms", "drift"}}, // checked by lock
		{[]string{"-ttl", "48h"}, []string{"invalid -ttl 48h0m0s"}},      // checked by lock
		{[]string{"-workers", "many"}, []string{`invalid value "many" for flag -workers`}},
		{[]string{"-bogus"}, []string{"flag provided but not defined: -bogus", "Usage: lockctl bench"}},
		{[]string{"extra"}, []string{`unexpected argument "extra"`}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runLockctl(t, t.Context(), append([]string{"bench"}, tt.args...)...)
			if code != 2 {
				t.Errorf("bench %q: exit %d, want 2", tt.args, code)
			}
			if stdout != "" {
				t.Errorf("bench %q: stdout %q, want none", tt.args, stdout)
			}
			for _, want := range tt.want {
				if !strings.Contains(stderr, want) {
					t.Errorf("bench %q: stderr %q, want it to contain %q", tt.args, stderr, want)
				}
			}
		})
	}
}

func TestBenchDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"duration", []string{"-duration", "100ms"}},
		{"duration before ops", []string{"-duration", "100ms", "-ops", "1000000000000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, r, stderr := benchJSON(t, t.Context(), tt.args...)
			if code != 0 || !r.OK {
				t.Errorf("bench %q: exit %d, ok %v; stderr:\n%s", tt.args, code, r.OK, stderr)
			}
			if r.Elapsed < 100*time.Millisecond || r.Elapsed > 2*time.Second {
				t.Errorf("bench %q: elapsed %v, want 100ms and a little", tt.args, r.Elapsed)
			}
			if r.Acquisitions == 0 || r.LostUpdates != 0 || r.HoldersMax != 1 {
				t.Errorf("bench %q: %d acquisitions, %d lost, holders max %d", tt.args, r.Acquisitions, r.LostUpdates, r.HoldersMax)
			}
		})
	}
}

func TestBenchInterrupt(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	code, r, stderr := benchJSON(t, ctx, "-duration", "1h", "-keys", "3", "-hold", "10us")
	if code != 0 || !r.OK || !r.Interrupted {
		t.Errorf("interrupted bench: exit %d, ok %v, interrupted %v; stderr:\n%s", code, r.OK, r.Interrupted, stderr)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("interrupted bench took %v", d)
	}
	if r.Acquisitions == 0 || r.LostUpdates != 0 || r.HoldersMax != 1 {
		t.Errorf("interrupted bench: %d acquisitions, %d lost, holders max %d", r.Acquisitions, r.LostUpdates, r.HoldersMax)
	}
}

func TestBenchProgress(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		cfg, err := parseBench([]string{"-duration", "120ms", "-progress=" + strconv.FormatBool(on)}, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		cfg.tick = 20 * time.Millisecond
		var stderr bytes.Buffer
		if _, err := runBench(t.Context(), cfg, &stderr); err != nil {
			t.Fatal(err)
		}
		got := stderr.String()
		if !on {
			if got != "" {
				t.Errorf("-progress=false: stderr %q, want none", got)
			}
			continue
		}
		if !strings.HasPrefix(got, "\rbench memory: ") || !strings.Contains(got, " ops, ") {
			t.Errorf("-progress: stderr %q, want progress lines", got)
		}
		// The line is erased at the end.
		if last := got[strings.LastIndex(strings.TrimSuffix(got, "\r"), "\r"):]; strings.Trim(last, "\r ") != "" {
			t.Errorf("-progress: stderr ends with %q, want the line erased", last)
		}
	}
	// Not a terminal: no progress unless asked.
	if cfg, _ := parseBench(nil, &bytes.Buffer{}); cfg.progress {
		t.Errorf("parseBench with a buffer as stderr: progress on, want off")
	}
}

// stuckBackend never grants a key, as a lost wake-up or a dead server would.
type stuckBackend struct{}

func (stuckBackend) Acquire(context.Context, lock.Request) (lock.Result, error) {
	return lock.Result{}, nil
}
func (stuckBackend) Extend(context.Context, lock.Request) (lock.Result, error) {
	return lock.Result{}, lock.ErrNotHeld
}
func (stuckBackend) Release(context.Context, lock.Request) error { return lock.ErrNotHeld }
func (stuckBackend) Close() error                                { return nil }

func TestBenchStall(t *testing.T) {
	t.Parallel()
	cfg, err := parseBench([]string{"-backend", "test-stuck", "-duration", "1h"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.tick, cfg.stallAfter = 10*time.Millisecond, 100*time.Millisecond
	start := time.Now()
	r, err := runBench(t.Context(), cfg, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Errorf("runBench on a stuck backend: %v, want an error about a stall", err)
	}
	if r == nil || r.OK || r.Acquisitions != 0 || !strings.Contains(r.Error, "stalled") {
		t.Errorf("runBench on a stuck backend: result %+v, want 0 acquisitions, not ok, the error", r)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("runBench on a stuck backend took %v", d)
	}
}

// decreasingBackend is an exclusive lock whose tokens decrease.
type decreasingBackend struct {
	mu   sync.Mutex
	next uint64
	held map[string]uint64
}

func (b *decreasingBackend) Acquire(_ context.Context, req lock.Request) (lock.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.held[req.Key]; ok {
		return lock.Result{}, nil
	}
	b.next--
	b.held[req.Key] = b.next
	return lock.Result{Acquired: true, Token: b.next, Pinned: true}, nil
}

func (b *decreasingBackend) Extend(_ context.Context, req lock.Request) (lock.Result, error) {
	return lock.Result{Acquired: true, Token: req.Token, Pinned: true}, nil
}

func (b *decreasingBackend) Release(_ context.Context, req lock.Request) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held[req.Key] != req.Token {
		return lock.ErrNotHeld
	}
	delete(b.held, req.Key)
	return nil
}

func (b *decreasingBackend) Close() error { return nil }

func TestBenchTokenOrder(t *testing.T) {
	t.Parallel()
	code, r, stderr := benchJSON(t, t.Context(), "-backend", "test-decreasing", "-workers", "1", "-ops", "100")
	if code != 1 || r.OK || r.TokenViolations != 99 {
		t.Errorf("bench with decreasing tokens: exit %d, ok %v, token violations %d; want 1, false, 99", code, r.OK, r.TokenViolations)
	}
	if r.HoldersMax != 1 || r.LostUpdates != 0 {
		t.Errorf("bench with decreasing tokens: holders max %d, lost %d; want 1, 0", r.HoldersMax, r.LostUpdates)
	}
	if !strings.Contains(stderr, "safety check failed: 99 tokens") {
		t.Errorf("bench with decreasing tokens: stderr %q, want the failed check", stderr)
	}
}
