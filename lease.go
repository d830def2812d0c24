package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// A Lease is a held lock on one key. Run the protected work under its
// context, which is cancelled, with a cause, when the lease ends: on Release,
// when the context given to Acquire ends, when the lease reaches its deadline
// without renewal, or when renewal fails. Call Release on every Lease, even
// one that already ended.
//
// A Lease that renews itself does so on one goroutine of its own, which has
// exited when Release returns. A Lease is safe for concurrent use. Its methods
// accept a nil *Lease, which holds nothing.
type Lease struct {
	m           *Mutex
	parent      context.Context // Acquire's context
	req         Request         // key, owner and token for Extend and Release
	pinned      bool            // held by the backend until Release, with no deadline
	renews      bool            // renewed by the goroutine renew
	driftFactor float64

	extendMu sync.Mutex // serialises extensions, so the last one sets the deadline

	mu         sync.Mutex
	ttl        time.Duration // of the last successful attempt or extension
	deadline   time.Time     // end of the confirmed validity; zero if pinned
	cause      error     // why the lease ended; nil while held
	ctx        context.Context
	cancel     context.CancelCauseFunc // made with ctx, on first request
	timer      *time.Timer             // cancels ctx at the deadline; made with ctx
	stopParent func() bool             // stops the context.AfterFunc on parent
	renewCtx   context.Context         // for extensions by renew; done when the lease ends
	stopRenew  context.CancelFunc      // cancels renewCtx
	renewed    chan struct{}           // closed when renew has returned
	tracked    bool                    // in m.live

	releaseMu sync.Mutex // held while the key is released
	released  bool
	releasErr error
}

// Context returns the lease's context. It is derived from the context given
// to Acquire, and cancelled when the lease ends; context.Cause tells why:
// ErrReleased, ErrLeaseLost, ErrExpired, ErrClosed, or the cause of the
// parent's end. Its values are those of Acquire's context.
func (l *Lease) Context() context.Context {
	if l == nil {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(ErrNotHeld)
		return ctx
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// The context and its timer are made on first request, so that a lease
	// whose context nobody watches costs neither.
	if l.ctx == nil {
		l.ctx, l.cancel = context.WithCancelCause(l.parent)
		if cause := l.causeLocked(); cause != nil {
			l.cancel(cause)
		} else if !l.pinned {
			l.timer = time.AfterFunc(time.Until(l.deadline), l.onDeadline)
		}
	}
	return l.ctx
}

// Done returns a channel closed when the lease ends: Context().Done().
func (l *Lease) Done() <-chan struct{} { return l.Context().Done() }

// Err returns nil while the lease holds its key, and then why it ended, as
// context.Cause(l.Context()) does.
func (l *Lease) Err() error {
	if l == nil {
		return ErrNotHeld
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.causeLocked()
}

// Token returns the lease's fencing token. Tokens strictly increase across
// the successive holders of a key: a store that accepts writes only with a
// token greater than the last one it saw rejects a holder that lost its lease
// without noticing.
func (l *Lease) Token() uint64 {
	if l == nil {
		return 0
	}
	return l.req.Token
}

// Key returns the key the lease holds in the backend, namespace included.
func (l *Lease) Key() string {
	if l == nil {
		return ""
	}
	return l.req.Key
}

// Deadline returns the end of the lease's confirmed validity, a conservative
// local time: the start of the last successful attempt or extension plus the
// TTL minus the drift. Renewal moves it forward. The lease's context is
// cancelled no later than this time unless renewed. ok is false when the lease
// has no deadline: the memory backend holds a lease that renews itself until
// it is released, since renewal in one process cannot fail.
func (l *Lease) Deadline() (deadline time.Time, ok bool) {
	if l == nil {
		return time.Time{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline, !l.pinned
}

// Extend sets the lease's TTL to ttl from now, and its deadline to now plus
// ttl minus the drift; renewal, if on, goes on with the new TTL. It returns
// the cause if the lease has already ended (ErrExpired past the deadline),
// and ends the lease with ErrLeaseLost if the backend no longer holds it. An
// error that leaves the backend's state unknown leaves the lease as it was,
// valid until its deadline.
func (l *Lease) Extend(ctx context.Context, ttl time.Duration) error {
	if l == nil {
		return ErrNotHeld
	}
	if ctx == nil {
		return invalidf("ctx", "nil", "must not be nil")
	}
	s := settings{ttl: ttl, driftFactor: l.driftFactor, backoff: Constant(DefaultDelay)}
	if err := s.validate(); err != nil {
		return err
	}
	l.extendMu.Lock()
	defer l.extendMu.Unlock()
	_, err := l.extend(ctx, s.ttl)
	return err
}

// extend extends the lease by ttl and reports whether it is still held. The
// caller holds l.extendMu.
func (l *Lease) extend(ctx context.Context, ttl time.Duration) (held bool, err error) {
	l.mu.Lock()
	cause, deadline := l.causeLocked(), l.deadline
	l.mu.Unlock()
	if cause != nil {
		return false, cause
	}
	start := time.Now()
	req := l.req
	req.TTL = ttl
	req.Deadline = deadline
	if !l.pinned {
		// An extension that ends after the deadline proves nothing.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	_, err = l.m.b.Extend(ctx, req)

	l.mu.Lock()
	defer l.mu.Unlock()
	if cause := l.causeLocked(); cause != nil {
		return false, cause
	}
	switch {
	case err == nil:
		l.ttl = ttl
		if !l.pinned {
			l.deadline = start.Add(ttl - drift(ttl, l.driftFactor))
			if l.timer != nil {
				l.timer.Reset(time.Until(l.deadline))
			}
		}
		return true, nil
	case errors.Is(err, ErrNotHeld) || errors.Is(err, ErrClosed):
		lost := fmt.Errorf("%w: %w", ErrLeaseLost, err)
		l.endLocked(lost)
		return false, lost
	}
	return true, err
}

// Release ends the lease and frees its key. It cancels the lease's context
// before it asks the backend to free the key, stops the renewal and waits for
// it to exit. It never frees a key held by another owner.
//
// Release returns nil if the lease held the key until now (or until its
// parent context ended, which released it then), and the lease's cause if
// it was lost or expired before (ErrLeaseLost, ErrExpired): work done under
// it may have overlapped another holder's. It is idempotent: later calls
// return the same result and send nothing. Release does not give up when ctx
// is done, since a release that gave up would leave the key held until its
// TTL; it is bounded by CleanupTimeout and the backend's own timeouts.
func (l *Lease) Release(ctx context.Context) error {
	if l == nil {
		return ErrNotHeld
	}
	if ctx == nil {
		return invalidf("ctx", "nil", "must not be nil")
	}
	l.mu.Lock()
	cause := l.causeLocked()
	l.endLocked(ErrReleased) // before the key is freed: no overlap with the next holder
	l.mu.Unlock()
	return l.release(ctx, cause)
}

// release frees the key once; cause is why the lease had ended before.
func (l *Lease) release(ctx context.Context, cause error) error {
	l.releaseMu.Lock()
	defer l.releaseMu.Unlock()
	if l.released {
		return l.releasErr
	}
	l.released = true
	if l.renewed != nil {
		<-l.renewed
	}
	rctx, cancel := cleanupContext(ctx)
	err := l.m.b.Release(rctx, l.req)
	cancel()
	if l.tracked {
		l.m.forget(l)
	}
	if errors.Is(cause, ErrLeaseLost) || errors.Is(cause, ErrExpired) {
		err = cause
	}
	l.releasErr = err
	return err
}

// giveBack frees the key of a lease that was never handed out.
func (l *Lease) giveBack(ctx context.Context) {
	l.end(ErrNotAcquired)
	_ = l.release(ctx, nil)
}

// start makes the lease follow its parent context and renew itself, as its
// settings ask. It fails after Close.
func (l *Lease) start() error {
	if err := l.m.track(l); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tracked = true
	if l.parent.Done() != nil {
		l.stopParent = context.AfterFunc(l.parent, l.onParentDone)
	}
	if l.renews {
		l.renewCtx, l.stopRenew = context.WithCancel(context.WithoutCancel(l.parent))
		l.renewed = make(chan struct{})
		go l.renew() // returns when the lease ends or renewal fails
	}
	return nil
}

// onParentDone ends the lease when Acquire's context ends, and frees the key
// at once on a detached context rather than leaving it to its TTL.
func (l *Lease) onParentDone() {
	cause := context.Cause(l.parent)
	l.end(cause)
	_ = l.release(l.parent, cause)
}

// onDeadline ends the lease at its deadline, unless an extension moved it.
func (l *Lease) onDeadline() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cause == nil && time.Now().Before(l.deadline) {
		l.timer.Reset(time.Until(l.deadline))
		return
	}
	l.causeLocked()
}

// renew extends the lease every third of its TTL until it ends. A failed
// extension is retried while the deadline allows; when it passes, or when the
// backend says the key is no longer held, the lease ends with ErrLeaseLost.
func (l *Lease) renew() {
	defer close(l.renewed)
	t := time.NewTimer(l.renewTTL() / 3)
	defer t.Stop()
	for {
		select {
		case <-l.renewCtx.Done():
			return
		case <-t.C:
		}
		l.extendMu.Lock()
		held, err := l.extend(l.renewCtx, l.renewTTL())
		l.extendMu.Unlock()
		if !held {
			return
		}
		next := l.renewTTL() / 3
		if err != nil {
			// Try again soon, while the deadline leaves time for a try.
			l.mu.Lock()
			next = max(min(next, time.Until(l.deadline)/2), time.Millisecond)
			l.mu.Unlock()
		}
		t.Reset(next)
	}
}

func (l *Lease) renewTTL() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ttl
}

// end ends the lease with cause, unless it has ended already.
func (l *Lease) end(cause error) {
	l.mu.Lock()
	l.endLocked(cause)
	l.mu.Unlock()
}

// causeLocked returns why the lease has ended, or nil while it holds the
// key. It notices an end that no timer reported, such as a deadline passed
// while nobody watched the lease's context.
func (l *Lease) causeLocked() error {
	if l.cause != nil {
		return l.cause
	}
	switch {
	case l.m.closed.Load():
		l.endLocked(ErrClosed)
	case !l.pinned && !time.Now().Before(l.deadline):
		if l.renews {
			l.endLocked(fmt.Errorf("%w: not renewed by its deadline", ErrLeaseLost))
		} else {
			l.endLocked(ErrExpired)
		}
	case l.parent.Err() != nil:
		l.endLocked(context.Cause(l.parent))
	}
	return l.cause
}

// endLocked records cause, cancels the lease's context, and stops what
// serves the lease. It does nothing if the lease has ended already.
func (l *Lease) endLocked(cause error) {
	if l.cause != nil {
		return
	}
	l.cause = cause
	if l.cancel != nil {
		l.cancel(cause)
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.stopParent != nil {
		l.stopParent()
	}
	if l.stopRenew != nil {
		l.stopRenew()
	}
}
