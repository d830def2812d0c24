//go:build !race

// The tests in this file let two holders write a key's counter at once, which
// is the data race bench exists to detect, so the race detector would fail
// them.

package main

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/leaselock/lock"
)

func init() {
	backends["test-broken"] = func(*backendFlags) (lock.Backend, error) { return new(brokenBackend), nil }
}

// brokenBackend grants every attempt: it excludes no one.
type brokenBackend struct{ token atomic.Uint64 }

func (b *brokenBackend) Acquire(context.Context, lock.Request) (lock.Result, error) {
	return lock.Result{Acquired: true, Token: b.token.Add(1), Pinned: true}, nil
}

func (b *brokenBackend) Extend(_ context.Context, req lock.Request) (lock.Result, error) {
	return lock.Result{Acquired: true, Token: req.Token, Pinned: true}, nil
}

func (b *brokenBackend) Release(context.Context, lock.Request) error { return nil }
func (b *brokenBackend) Close() error                                { return nil }

func TestBenchDetectsOverlap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"no exclusion", []string{"-backend", "test-broken", "-workers", "8", "-hold", "1ms", "-ops", "200"}},
		// Leases that expire while their holder works: the lock is right to
		// let the next one in, and bench must see the overlap.
		{"expired leases", []string{"-renew=false", "-ttl", "5ms", "-hold", "10ms", "-workers", "4", "-ops", "30"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, r, stderr := benchJSON(t, t.Context(), tt.args...)
			if code != 1 || r.OK {
				t.Errorf("bench %q: exit %d, ok %v; want 1, false", tt.args, code, r.OK)
			}
			if r.HoldersMax < 2 || r.LostUpdates <= 0 || len(r.Failures) < 2 {
				t.Errorf("bench %q: holders max %d, lost %d, failures %q; want overlap detected", tt.args, r.HoldersMax, r.LostUpdates, r.Failures)
			}
			if !strings.Contains(stderr, "safety check failed") {
				t.Errorf("bench %q: stderr %q, want the failed checks", tt.args, stderr)
			}
		})
	}
}
