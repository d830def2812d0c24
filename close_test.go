package lock_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	closeWithin(t, m, 5*time.Second, nil, "Close still waits for the Acquire after 5s")
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

// gatedLeaver is a memory backend that presents itself as a Leaver (a
// backend that keeps its keys outside the process) and, while armed, holds
// the reply of the next granted attempt until let go. It records its
// releases and its Close, in order.
type gatedLeaver struct {
	*memory.Backend
	armed   atomic.Bool
	granted chan struct{} // the armed attempt was granted (room for one)
	letGo   chan struct{} // the armed attempt may return
	mu      sync.Mutex
	events  []string
}

func (g *gatedLeaver) Leave(context.Context, lock.Request) {}

func (g *gatedLeaver) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	res, err := g.Backend.Acquire(ctx, req)
	if res.Acquired && g.armed.CompareAndSwap(true, false) {
		g.granted <- struct{}{}
		<-g.letGo
	}
	return res, err
}

func (g *gatedLeaver) Release(ctx context.Context, req lock.Request) error {
	err := g.Backend.Release(ctx, req)
	g.record(fmt.Sprintf("release %s: %v", req.Key, err))
	return err
}

func (g *gatedLeaver) Close() error {
	g.record("close")
	return g.Backend.Close()
}

func (g *gatedLeaver) record(e string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.events = append(g.events, e)
}

// TestCloseWaitsForFirstAttempt checks that Close waits for an Acquire's
// first attempt on a backend that keeps its keys outside the process: a
// grant that lands as Close begins is given back while the backend is
// still open, not refused by a closed backend and left until its TTL.
func TestCloseWaitsForFirstAttempt(t *testing.T) {
	g := newGatedLeaver(t)
	g.armed.Store(true)
	m := lock.New(g)
	ctx := context.Background()
	got := make(chan error, 1)
	go func() {
		l, err := m.TryAcquire(ctx, "k")
		if err == nil {
			t.Error("TryAcquire returned a lease of a closed Mutex")
			l.Release(ctx)
		}
		got <- err
	}()
	<-g.granted
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	// Close began: new calls fail with ErrClosed.
	for {
		if _, err := m.TryAcquire(ctx, "other"); errors.Is(err, lock.ErrClosed) {
			break
		}
		runtime.Gosched()
	}
	close(g.letGo)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, lock.ErrClosed) {
		t.Errorf("TryAcquire during Close returned %v, want ErrClosed", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	// The polls above may have been granted "other" before Close began:
	// Close releases those leases too.
	n := len(g.events)
	if n == 0 || g.events[n-1] != "close" || !slices.Contains(g.events, "release k: <nil>") ||
		slices.ContainsFunc(g.events[:n-1], func(e string) bool { return !strings.HasSuffix(e, ": <nil>") }) {
		t.Errorf("backend saw %q, want releases that succeeded, k's among them, then close: the grant must be given back before the backend closes", g.events)
	}
}

// blockingObserver's Acquired waits until let go.
type blockingObserver struct {
	nopObserver
	entered chan struct{}
	letGo   chan struct{}
}

func (o blockingObserver) Acquired(context.Context, lock.AcquireEvent) {
	close(o.entered)
	<-o.letGo
}

// TestCloseDoesNotWaitForObserver checks that Close, which waits for an
// Acquire under way on a Leaver, does not wait for the Acquire's Observer:
// a callback that waits for Close to end (as a program's shutdown might)
// would wait forever.
func TestCloseDoesNotWaitForObserver(t *testing.T) {
	g := newGatedLeaver(t)
	obs := blockingObserver{entered: make(chan struct{}), letGo: make(chan struct{})}
	m := lock.New(g, lock.WithObserver(obs))
	ctx := context.Background()
	got := make(chan error, 1)
	go func() {
		_, err := m.Acquire(ctx, "k")
		got <- err
	}()
	<-obs.entered
	var once sync.Once
	letGo := func() { once.Do(func() { close(obs.letGo) }) }
	closeWithin(t, m, 10*time.Second, letGo, "Close waited for an Observer's callback")
	letGo()
	if err := <-got; err != nil {
		t.Errorf("Acquire before Close returned %v", err)
	}
}

// TestCloseAfterDoneContext checks that an Acquire on a Leaver that ends
// before its first attempt, for a done context, leaves nothing for Close
// to wait for.
func TestCloseAfterDoneContext(t *testing.T) {
	g := newGatedLeaver(t)
	m := lock.New(g)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.TryAcquire(ctx, "k"); !errors.Is(err, lock.ErrNotAcquired) {
		t.Fatalf("TryAcquire with a done context returned %v, want ErrNotAcquired", err)
	}
	closeWithin(t, m, 10*time.Second, nil, "Close waited for an Acquire that had returned")
}

// closeWithin closes m, and fails the test with why if Close has not
// returned within limit. Before it fails, it calls unstick, if not nil, and
// waits for Close, so that no goroutine is left behind.
func closeWithin(t *testing.T, m *lock.Mutex, limit time.Duration, unstick func(), why string) {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(limit):
		if unstick != nil {
			unstick()
			<-closed
		}
		t.Fatal(why)
	}
}

// newGatedLeaver returns a gatedLeaver over a new memory backend, not
// armed.
func newGatedLeaver(t *testing.T) *gatedLeaver {
	return &gatedLeaver{Backend: newMemory(t), granted: make(chan struct{}, 1), letGo: make(chan struct{})}
}
