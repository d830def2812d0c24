package lock

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestWaitStartsDiffer checks that no two Acquires in a process tell a
// backend the same Request.Since, which rueidislock uses to name waiters
// on the server: not those of one Mutex, nor those of two Mutexes sharing
// the backend, even where the clock does not move between them (in a
// synctest bubble time.Now is the same for every call).
func TestWaitStartsDiffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &sinceRecorder{}
		m1, m2 := New(b), New(b)
		ctx := context.Background()
		for range 50 {
			for _, m := range []*Mutex{m1, m2} {
				l, err := m.Acquire(ctx, "k")
				if err != nil {
					t.Fatal(err)
				}
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		seen := make(map[time.Time]bool)
		for _, s := range b.since {
			if seen[s] {
				t.Fatalf("two Acquires began to wait at %v", s)
			}
			seen[s] = true
		}
		if len(seen) != 100 {
			t.Fatalf("the backend saw %d attempts, want 100", len(seen))
		}
	})
}

// sinceRecorder is a Leaver that grants every attempt and records its
// Request.Since.
type sinceRecorder struct {
	mu    sync.Mutex
	since []time.Time
}

func (r *sinceRecorder) Acquire(_ context.Context, req Request) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.since = append(r.since, req.Since)
	return Result{Acquired: true, Owner: "owner", Start: time.Now()}, nil
}

func (r *sinceRecorder) Extend(context.Context, Request) (Result, error) {
	return Result{Acquired: true, Start: time.Now()}, nil
}

func (r *sinceRecorder) Release(context.Context, Request) error { return nil }
func (r *sinceRecorder) Close() error                           { return nil }
func (r *sinceRecorder) Leave(context.Context, Request)         {}

func (r *sinceRecorder) Wait(context.Context, Request, time.Duration) (Result, error) {
	return Result{}, nil
}
