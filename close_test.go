package lock_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/memory"
)

// ctxErrWaiter is a memory backend whose Wait reports the end of its
// context as an error, as the Waiter contract allows, and tells waiting
// when a Wait begins.
type ctxErrWaiter struct {
	*memory.Backend
	waiting chan struct{}
}

func (w ctxErrWaiter) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	select {
	case w.waiting <- struct{}{}:
	default:
	}
	res, err := w.Backend.Wait(ctx, req, d)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return res, err
}

// TestCloseEndsFailingWait checks that Close ends an Acquire that waits
// through a backend whose Wait reports the end of its context as an error:
// Close ends that context, and the Acquire must return ErrClosed rather
// than wait again at once, forever, with Close waiting for it.
func TestCloseEndsFailingWait(t *testing.T) {
	b := ctxErrWaiter{newMemory(t), make(chan struct{}, 1)}
	m, holder := lock.New(b), lock.New(b)
	defer holder.Close()
	ctx := context.Background()
	if _, err := holder.Acquire(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := m.Acquire(ctx, "k", lock.WithDelay(time.Minute))
		got <- err
	}()
	<-b.waiting
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waits for the Acquire after 5s")
	}
	if err := <-got; !errors.Is(err, lock.ErrClosed) {
		t.Errorf("the waiting Acquire returned %v, want ErrClosed", err)
	}
}

// slowRelease is an unpinned memory backend whose Release takes a second,
// as over a network with a frozen node.
type slowRelease struct{ unpinned }

func (b slowRelease) Release(ctx context.Context, req lock.Request) error {
	time.Sleep(time.Second)
	return b.unpinned.Release(ctx, req)
}

// TestCloseReleasesTogether checks that Close releases the leases it ends
// together, not one after another: with ten leases whose releases take a
// second each, Close takes a second, not ten.
func TestCloseReleasesTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := lock.New(slowRelease{unpinned{memory.New()}})
		ctx := context.Background()
		for i := range 10 {
			if _, err := m.Acquire(ctx, fmt.Sprint("k", i)); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took != time.Second {
			t.Errorf("Close took %v with ten releases of a second each, want 1s", took)
		}
	})
}
