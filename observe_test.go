package lock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/memory"
)

// recorder is an Observer that writes each event down as a line, with the
// durations the fake clock of synctest makes exact and the errors by the
// sentinel they match.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, a...))
}

// take returns the events written down since the last take.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

func (r *recorder) Acquired(_ context.Context, e lock.AcquireEvent) {
	r.add("acquired %s token=%d attempts=%d wait=%v latency=%v err=%s", e.Key, e.Token, e.Attempts, e.Wait, e.Latency, errName(e.Err))
}

func (r *recorder) Renewed(_ context.Context, e lock.RenewEvent) {
	r.add("renewed %s token=%d ttl=%v latency=%v auto=%v err=%s", e.Key, e.Token, e.TTL, e.Latency, e.Auto, errName(e.Err))
}

func (r *recorder) Lost(_ context.Context, e lock.LeaseEvent) {
	r.add("lost %s token=%d held=%v cause=%s", e.Key, e.Token, e.Held, errName(e.Cause))
}

func (r *recorder) Released(_ context.Context, e lock.ReleaseEvent) {
	r.add("released %s token=%d held=%v cause=%s err=%s", e.Key, e.Token, e.Held, errName(e.Cause), errName(e.Err))
}

func (r *recorder) NodeError(_ context.Context, e lock.NodeErrorEvent) {
	r.add("node error %s op=%s node=%d addr=%s err=%v", e.Key, e.Op, e.Node, e.Addr, e.Err)
}

// errName names the sentinel err matches, for comparing events.
func errName(err error) string {
	for _, s := range []struct {
		name string
		err  error
	}{
		{"nil", nil},
		{"ErrLeaseLost", lock.ErrLeaseLost},
		{"ErrExpired", lock.ErrExpired},
		{"ErrReleased", lock.ErrReleased},
		{"ErrClosed", lock.ErrClosed},
		{"ErrNotAcquired", lock.ErrNotAcquired},
		{"ErrNotHeld", lock.ErrNotHeld},
		{"Canceled", context.Canceled},
	} {
		if err == s.err || s.err != nil && errors.Is(err, s.err) {
			return s.name
		}
	}
	return err.Error()
}

func checkEvents(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: events\n\t%s\nwant\n\t%s", what, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// checkEventSet is checkEvents for events of goroutines that run at once,
// such as a release and the waiter it hands the key to: it ignores their
// order.
func checkEventSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: events\n\t%s\nwant\n\t%s", what, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// TestObserverLifeCycle pins the events of issue 4 item 3 over the life of
// leases that renew: an acquisition at once and one after a wait, automatic
// and explicit renewals, a renewal refused (a loss), and the releases by
// Release, by Close and by the end of Acquire's context, each with exact
// durations.
func TestObserverLifeCycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := new(recorder)
		b := &flaky{unpinned: unpinned{newMemory(t)}, extendErr: lock.ErrNotHeld}
		m := lock.New(b, lock.WithObserver(rec), lock.WithTTL(3*time.Second), lock.WithDriftFactor(0))
		defer m.Close()
		ctx := t.Context()

		l1, err := m.Acquire(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		var l2 *lock.Lease
		done := make(chan struct{})
		go func() {
			defer close(done)
			var err error
			// A long delay: the wait ends on the release's hand-off alone.
			if l2, err = m.Acquire(ctx, "k", lock.WithDelay(time.Minute)); err != nil {
				t.Error(err)
			}
		}()
		time.Sleep(1500 * time.Millisecond) // one renewal of l1, at 1s
		if err := l1.Release(ctx); err != nil {
			t.Fatal(err)
		}
		<-done
		synctest.Wait() // l2's renewal has started, with a timer for TTL/3
		t1, t2 := l1.Token(), l2.Token()
		checkEventSet(t, "acquire, renew, release, acquire after a wait", rec.take(), []string{
			fmt.Sprintf("acquired k token=%d attempts=1 wait=0s latency=0s err=nil", t1),
			fmt.Sprintf("renewed k token=%d ttl=3s latency=0s auto=true err=nil", t1),
			fmt.Sprintf("released k token=%d held=1.5s cause=ErrReleased err=nil", t1),
			fmt.Sprintf("acquired k token=%d attempts=2 wait=1.5s latency=1.5s err=nil", t2),
		})

		if err := l2.Extend(ctx, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		b.failExtend.Store(true)
		<-l2.Done() // the next renewal, 1s after the grant, is refused
		synctest.Wait()
		checkEvents(t, "extend, then a refused renewal", rec.take(), []string{
			fmt.Sprintf("renewed k token=%d ttl=2s latency=0s auto=false err=nil", t2),
			fmt.Sprintf("renewed k token=%d ttl=2s latency=0s auto=true err=ErrLeaseLost", t2),
			fmt.Sprintf("lost k token=%d held=1s cause=ErrLeaseLost", t2),
		})
		if err := l2.Release(ctx); !errors.Is(err, lock.ErrLeaseLost) {
			t.Errorf("Release() = %v, want %v", err, lock.ErrLeaseLost)
		}
		checkEvents(t, "release of a lost lease", rec.take(), []string{
			fmt.Sprintf("released k token=%d held=1s cause=ErrLeaseLost err=ErrLeaseLost", t2),
		})

		b.failExtend.Store(false)
		pctx, cancel := context.WithCancel(ctx)
		l3, err := m.Acquire(pctx, "parent")
		if err != nil {
			t.Fatal(err)
		}
		l4, err := m.Acquire(ctx, "closed")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second / 2)
		cancel()
		synctest.Wait()
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		checkEvents(t, "ends by the parent context and by Close", rec.take(), []string{
			fmt.Sprintf("acquired parent token=%d attempts=1 wait=0s latency=0s err=nil", l3.Token()),
			fmt.Sprintf("acquired closed token=%d attempts=1 wait=0s latency=0s err=nil", l4.Token()),
			fmt.Sprintf("released parent token=%d held=500ms cause=Canceled err=nil", l3.Token()),
			fmt.Sprintf("released closed token=%d held=500ms cause=ErrClosed err=nil", l4.Token()),
		})
		// Later releases tell nothing again.
		_ = l1.Release(ctx)
		_ = l3.Release(ctx)
		_ = l4.Release(ctx)
		checkEvents(t, "releases again", rec.take(), nil)
	})
}

// TestObserverExpiry pins the loss of a lease that does not renew itself:
// told at its deadline when its context is watched, and at Release when not.
func TestObserverExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := new(recorder)
		m := lock.New(unpinned{newMemory(t)}, lock.WithObserver(rec), lock.WithAutoExtend(false),
			lock.WithTTL(time.Second), lock.WithDriftFactor(0))
		defer m.Close()
		watched, err := m.Acquire(t.Context(), "watched")
		if err != nil {
			t.Fatal(err)
		}
		unwatched, err := m.Acquire(t.Context(), "unwatched")
		if err != nil {
			t.Fatal(err)
		}
		rec.take()
		<-watched.Done()
		synctest.Wait()
		checkEvents(t, "at the deadline", rec.take(), []string{
			fmt.Sprintf("lost watched token=%d held=998ms cause=ErrExpired", watched.Token()),
		})
		time.Sleep(time.Second)
		_ = watched.Release(t.Context())
		_ = unwatched.Release(t.Context())
		checkEvents(t, "at Release", rec.take(), []string{
			fmt.Sprintf("released watched token=%d held=1.998s cause=ErrExpired err=ErrExpired", watched.Token()),
			fmt.Sprintf("lost unwatched token=%d held=1.998s cause=ErrExpired", unwatched.Token()),
			fmt.Sprintf("released unwatched token=%d held=1.998s cause=ErrExpired err=ErrExpired", unwatched.Token()),
		})
	})
}

// TestObserverPinned pins the events of the memory backend's leases that
// need no renewal, including the quick path of Release.
func TestObserverPinned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := new(recorder)
		m := lock.New(newMemory(t), lock.WithObserver(rec))
		defer m.Close()
		for _, ctx := range []context.Context{context.Background(), t.Context()} {
			l, err := m.Acquire(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.TryAcquire(ctx, "k"); !errors.Is(err, lock.ErrNotAcquired) {
				t.Fatalf("TryAcquire() = %v, want %v", err, lock.ErrNotAcquired)
			}
			time.Sleep(time.Minute)
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
			checkEvents(t, "pinned", rec.take(), []string{
				fmt.Sprintf("acquired k token=%d attempts=1 wait=0s latency=0s err=nil", l.Token()),
				"acquired k token=0 attempts=1 wait=0s latency=0s err=ErrNotAcquired",
				fmt.Sprintf("released k token=%d held=1m0s cause=ErrReleased err=nil", l.Token()),
			})
		}
	})
}

// failingNodes is a backend over nodes of which one, node 2, fails every
// call, as package rueidislock reports it.
type failingNodes struct{ unpinned }

var errNodeDown = errors.New("connection refused")

func (b failingNodes) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	lock.ReportNodeError(ctx, 2, "10.0.0.3:6379", errNodeDown)
	return b.unpinned.Acquire(ctx, req)
}

func (b failingNodes) Extend(ctx context.Context, req lock.Request) (lock.Result, error) {
	lock.ReportNodeError(ctx, 2, "10.0.0.3:6379", errNodeDown)
	return b.unpinned.Extend(ctx, req)
}

func (b failingNodes) Release(ctx context.Context, req lock.Request) error {
	lock.ReportNodeError(ctx, 2, "10.0.0.3:6379", errNodeDown)
	return b.unpinned.Release(ctx, req)
}

// TestObserverNodeErrors pins that the failures a backend reports for one
// node reach the Observer of the call, with its key and operation, even
// when the call succeeds; and that they reach no other Mutex's Observer, not
// even through a lease's context.
func TestObserverNodeErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := new(recorder)
		m := lock.New(failingNodes{unpinned{newMemory(t)}}, lock.WithObserver(rec), lock.WithDriftFactor(0))
		defer m.Close()
		l, err := m.Acquire(t.Context(), "k", lock.WithAutoExtend(false))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Extend(t.Context(), time.Second); err != nil {
			t.Fatal(err)
		}
		// A Mutex with no Observer, used under the lease's context: its
		// backend's reports go nowhere.
		quiet := lock.New(failingNodes{unpinned{newMemory(t)}})
		defer quiet.Close()
		ql, err := quiet.Acquire(l.Context(), "quiet")
		if err != nil {
			t.Fatal(err)
		}
		if err := ql.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		tok := l.Token()
		checkEvents(t, "node errors", rec.take(), []string{
			"node error k op=acquire node=2 addr=10.0.0.3:6379 err=connection refused",
			fmt.Sprintf("acquired k token=%d attempts=1 wait=0s latency=0s err=nil", tok),
			"node error k op=extend node=2 addr=10.0.0.3:6379 err=connection refused",
			fmt.Sprintf("renewed k token=%d ttl=1s latency=0s auto=false err=nil", tok),
			"node error k op=release node=2 addr=10.0.0.3:6379 err=connection refused",
			fmt.Sprintf("released k token=%d held=0s cause=ErrReleased err=nil", tok),
		})
		// Without an Observer, ReportNodeError does nothing, whatever ctx is.
		lock.ReportNodeError(context.Background(), 0, "x", errNodeDown)
	})
}

// TestObserverPerCall pins that WithObserver and WithLogger given to a call
// replace, for that call and its lease, those given to New.
func TestObserverPerCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		def, call := new(recorder), new(recorder)
		m := lock.New(newMemory(t), lock.WithObserver(def))
		defer m.Close()
		l, err := m.Acquire(t.Context(), "k", lock.WithObserver(call))
		if err != nil {
			t.Fatal(err)
		}
		_ = l.Release(t.Context())
		l, err = m.Acquire(t.Context(), "k", lock.WithObserver(nil))
		if err != nil {
			t.Fatal(err)
		}
		_ = l.Release(t.Context())
		if got := def.take(); len(got) != 0 {
			t.Errorf("the Mutex's Observer got %q, want nothing", got)
		}
		if got := call.take(); len(got) != 2 {
			t.Errorf("the call's Observer got %q, want acquired and released", got)
		}

		var buf bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		l, err = m.Acquire(t.Context(), "logged", lock.WithLogger(logger))
		if err != nil {
			t.Fatal(err)
		}
		_ = l.Release(t.Context())
		if got := def.take(); len(got) != 2 {
			t.Errorf("with WithLogger, the Mutex's Observer got %q, want acquired and released", got)
		}
		if n := strings.Count(buf.String(), "\n"); n != 2 {
			t.Errorf("WithLogger logged %d lines, want 2:\n%s", n, buf.String())
		}
	})
}

// TestObserverOffCostsNothing pins that without an Observer the quick path
// of the memory backend makes one allocation, the Lease, of at most 96 bytes.
func TestObserverOffCostsNothing(t *testing.T) {
	if size := reflect.TypeFor[lock.Lease]().Size(); size > 96 {
		t.Errorf("a Lease is %d bytes, want at most 96", size)
	}
	m := lock.New(memory.New())
	defer m.Close()
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		l, err := m.Acquire(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 1 {
		t.Errorf("Acquire and Release made %v allocations, want 1", allocs)
	}
}

// secretive is a flaky backend whose proof of ownership is a known secret,
// which it requires back in every extension and release.
type secretive struct{ *flaky }

const secretOwner = "0123456789abcdef-secret-lock-value"

func (b secretive) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	res, err := b.flaky.Acquire(ctx, req)
	res.Owner = secretOwner
	return res, err
}

func (b secretive) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	res, err := b.flaky.Wait(ctx, req, d)
	res.Owner = secretOwner
	return res, err
}

func (b secretive) Extend(ctx context.Context, req lock.Request) (lock.Result, error) {
	if req.Owner != secretOwner {
		return lock.Result{}, fmt.Errorf("extend by owner %q", req.Owner)
	}
	lock.ReportNodeError(ctx, 1, "10.0.0.2:6379", errNodeDown)
	return b.flaky.Extend(ctx, req)
}

func (b secretive) Release(ctx context.Context, req lock.Request) error {
	if req.Owner != secretOwner {
		return fmt.Errorf("release by owner %q", req.Owner)
	}
	return b.flaky.Release(ctx, req)
}

// TestLoggerLifeCycle pins what WithLogger logs over a life cycle with a
// wait, renewals, a node error and a loss, at which levels and with which
// attributes, and that no line holds the lock's value (guarantee 9).
func TestLoggerLifeCycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		b := secretive{&flaky{unpinned: unpinned{newMemory(t)}, extendErr: lock.ErrNotHeld}}
		m := lock.New(b, lock.WithLogger(logger), lock.WithTTL(3*time.Second), lock.WithDriftFactor(0))
		defer m.Close()
		ctx := t.Context()

		l1, err := m.Acquire(ctx, "job")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(1500 * time.Millisecond) // one renewal, at 1s
			_ = l1.Release(ctx)
		}()
		l2, err := m.Acquire(ctx, "job", lock.WithDelay(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		b.failExtend.Store(true)
		<-l2.Done()
		_ = l2.Release(ctx)
		if _, err := m.TryAcquire(ctx, "job", lock.WithTTL(0)); !errors.Is(err, lock.ErrInvalid) {
			t.Fatalf("TryAcquire with TTL 0 = %v, want %v", err, lock.ErrInvalid)
		}

		type line struct {
			Level, Msg string
			Key        string
			Token      uint64
			Attempts   int
			Wait       time.Duration
			Held       time.Duration
			Op         string
			Node       *int
			Error      string
			Cause      string
		}
		var lines []line
		for _, raw := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if strings.Contains(raw, secretOwner) {
				t.Errorf("a log line holds the lock's value: %s", raw)
			}
			var l line
			if err := json.Unmarshal([]byte(raw), &l); err != nil {
				t.Fatalf("%s: %v", raw, err)
			}
			lines = append(lines, l)
		}
		var got []string
		for _, l := range lines {
			s := fmt.Sprintf("%s %q key=%s", l.Level, l.Msg, l.Key)
			switch l.Msg {
			case "lock acquired", "lock acquired after waiting":
				s += fmt.Sprintf(" token=%v attempts=%d wait=%v", l.Token == l1.Token() || l.Token == l2.Token(), l.Attempts, l.Wait)
			case "lock node error":
				s += fmt.Sprintf(" op=%s node=%d error=%s", l.Op, *l.Node, l.Error)
			case "lock renewal failed":
				s += " error=" + l.Error
			case "lock lost", "lock released":
				s += fmt.Sprintf(" held=%v cause=%s", l.Held, l.Cause)
			}
			got = append(got, s)
		}
		lost := "lock: lease lost: lock: not held"
		checkEventSet(t, "log", got, []string{
			`DEBUG "lock acquired" key=job token=true attempts=1 wait=0s`,
			`WARN "lock node error" key=job op=extend node=1 error=connection refused`,
			`DEBUG "lock renewed" key=job`,
			`DEBUG "lock released" key=job held=1.5s cause=`,
			`DEBUG "lock acquired after waiting" key=job token=true attempts=2 wait=1.5s`,
			`WARN "lock node error" key=job op=extend node=1 error=connection refused`,
			`WARN "lock renewal failed" key=job error=` + lost,
			`WARN "lock lost" key=job held=1s cause=` + lost,
			`DEBUG "lock released" key=job held=1s cause=` + lost,
		})
	})
}

// nopObserver is an Observer that does nothing, to measure what telling one
// costs.
type nopObserver struct{}

func (nopObserver) Acquired(context.Context, lock.AcquireEvent)    {}
func (nopObserver) Renewed(context.Context, lock.RenewEvent)       {}
func (nopObserver) Lost(context.Context, lock.LeaseEvent)          {}
func (nopObserver) Released(context.Context, lock.ReleaseEvent)    {}
func (nopObserver) NodeError(context.Context, lock.NodeErrorEvent) {}

// BenchmarkObserver measures Acquire and Release on the memory backend, as
// BenchmarkMutex/uncontended/lock does, with no Observer, with one that does
// nothing, and with a logger whose level drops every line of a healthy
// lease (Info).
func BenchmarkObserver(b *testing.B) {
	quiet := slog.New(slog.NewJSONHandler(io.Discard, nil))
	for _, bc := range []struct {
		name string
		opts []lock.Option
	}{
		{"off", nil},
		{"nop", []lock.Option{lock.WithObserver(nopObserver{})}},
		{"logger-info", []lock.Option{lock.WithLogger(quiet)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := lock.New(memory.New(), bc.opts...)
			defer m.Close()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				l, err := m.Acquire(ctx, "key")
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// ExampleWithLogger logs the life of a lease. The durations, which vary from
// run to run, are left out here.
func ExampleWithLogger() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			switch a.Key {
			case slog.TimeKey, "latency", "wait", "held":
				return slog.Attr{}
			}
			return a
		},
	}))
	m := lock.New(memory.New(), lock.WithLogger(logger))
	defer m.Close()

	ctx := context.Background()
	lease, err := m.Acquire(ctx, "nightly-report")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := lease.Release(ctx); err != nil {
		fmt.Println(err)
	}
	// Output:
	// level=DEBUG msg="lock acquired" key=nightly-report token=1 attempts=1
	// level=DEBUG msg="lock released" key=nightly-report token=1
}
