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
	m      *Mutex
	parent context.Context // Acquire's context
	key    string
	token  uint64
	handle any  // the backend's Handle of the grant
	pinned bool // held by the backend until Release, with no deadline
	renews bool // renewed by renewTick

	mu    sync.Mutex
	state releaseState
	ended endReason    // why the lease ended, if it has
	x     *leaseExtras // made when first needed, and at once unless pinned
	obs   *leaseObs    // observers, if any; read with mu held (see giveBack)
}

// endReason is why a lease ended. The common causes need no storage, which
// keeps a Lease small; any other is kept in the extras.
type endReason uint8

const (
	notEnded endReason = iota
	endReleased
	endClosed
	endExpired
	endOther // the cause is x.cause
)

// releaseState tells whether a lease's key was given back to the backend.
type releaseState uint8

const (
	held releaseState = iota
	releasing
	released
)

// leaseExtras is the part of a Lease that most leases of the memory backend
// never need: it is allocated by the first method that does. The leases of
// other backends, which have a deadline, have it from the start.
type leaseExtras struct {
	owner       string        // the backend's proof of ownership
	driftFactor float64       // zero if pinned: a lease with no deadline has no drift
	relErr      error         // the result of the release, once released
	cause       error         // why the lease ended, if end is endOther
	ttl         time.Duration // of the last successful attempt or extension
	deadline    time.Time     // end of the confirmed validity; zero if pinned
	ctx         context.Context
	cancel      context.CancelCauseFunc // cancels ctx
	timer       *time.Timer             // cancels ctx at the deadline
	stopParent  func() bool             // stops the context.AfterFunc on parent
	renewTimer  *time.Timer             // runs renewTick
	renewCtx    context.Context         // for extensions by renewTick; done when the lease ends
	stopRenew   context.CancelFunc      // cancels renewCtx
	renewing    bool                    // renewTick is extending the lease
	renewIdle   chan struct{}           // closed when renewTick stops extending, if Release waits
	tracked     bool                    // in m.live, for Close
	extendMu    sync.Mutex              // serialises extensions, so the last one sets the deadline
	released    chan struct{}           // closed once released, if another caller waits for it
}

func (l *Lease) extras() *leaseExtras {
	if l.x == nil {
		l.x = new(leaseExtras)
	}
	return l.x
}

// requestLocked returns what the backend needs to extend or release the
// lease.
func (l *Lease) requestLocked() Request {
	req := Request{Key: l.key, Token: l.token, Handle: l.handle, Renew: l.renews || l.pinned}
	if l.x != nil {
		req.Owner = l.x.owner
	}
	return req
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
	if l.x != nil && l.x.ctx != nil {
		defer l.mu.Unlock()
		return l.x.ctx
	}
	l.mu.Unlock()
	// The context and its timer are made on first request, so that a lease
	// whose context nobody watches costs neither. Close must end it then.
	l.track()
	l.mu.Lock()
	defer l.mu.Unlock()
	x := l.extras()
	if x.ctx == nil {
		x.ctx, x.cancel = context.WithCancelCause(l.parent)
		if cause := l.causeLocked(); cause != nil {
			x.cancel(cause)
		} else if !l.pinned {
			x.timer = time.AfterFunc(time.Until(x.deadline), l.onDeadline)
		}
	}
	return x.ctx
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
	return l.token
}

// Key returns the key the lease holds in the backend, namespace included.
func (l *Lease) Key() string {
	if l == nil {
		return ""
	}
	return l.key
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
	if l.pinned {
		return time.Time{}, false
	}
	return l.x.deadline, true
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
	l.mu.Lock()
	x := l.extras()
	l.mu.Unlock()
	ttl, err := checkTTL("ttl", ttl, x.driftFactor)
	if err != nil {
		return err
	}
	var ev leaseEvents
	x.extendMu.Lock()
	_, err = l.extend(ctx, ttl, &ev)
	x.extendMu.Unlock()
	ev.send()
	return err
}

// extend extends the lease by ttl and reports whether it is still held. The
// caller holds the extendMu of l's extras, and sends ev once it let go of it.
func (l *Lease) extend(ctx context.Context, ttl time.Duration, ev *leaseEvents) (held bool, err error) {
	l.mu.Lock()
	cause, deadline, req, obs := l.causeLocked(), l.x.deadline, l.requestLocked(), l.obs
	l.lossLocked(ev, cause)
	l.mu.Unlock()
	if cause != nil {
		return false, cause
	}
	start := time.Now()
	req.TTL = ttl
	req.Drift = drift(ttl, l.x.driftFactor)
	if !l.pinned && !l.m.mutants.lateRenewal {
		// An extension that ends after the deadline proves nothing.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	if obs != nil {
		ctx = obs.backendContext(ctx, l.key, "extend")
	}
	_, err = l.m.b.Extend(ctx, req)

	l.mu.Lock()
	defer l.mu.Unlock()
	if cause := l.causeLocked(); cause != nil {
		if isLoss(cause) {
			// Past the deadline, the extension failed, whatever the backend said.
			l.renewLocked(ev, ttl, start, cause)
			l.lossLocked(ev, cause)
		}
		return false, cause
	}
	l.renewLocked(ev, ttl, start, err)
	switch {
	case err == nil:
		l.x.ttl = ttl
		if !l.pinned {
			l.x.deadline = start.Add(ttl - req.Drift)
			if l.x.timer != nil {
				l.x.timer.Reset(time.Until(l.x.deadline))
			}
		}
		return true, nil
	case errors.Is(err, ErrNotHeld) || errors.Is(err, ErrClosed):
		lost := fmt.Errorf("%w: %w", ErrLeaseLost, err)
		l.endLocked(lost)
		ev.renew.Err = lost
		l.lossLocked(ev, lost)
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
// it may have overlapped another holder's. Other errors are the backend's,
// such as ErrNotHeld when a key that was still valid here was gone there, or
// ErrClosed after Close. Release is idempotent: later calls return the same
// result and send nothing. It does not stop when ctx ends, since a release
// that gave up would leave the key held until its TTL: the backend's own
// timeouts bound it, and CleanupTimeout if ctx had ended before the call.
func (l *Lease) Release(ctx context.Context) error {
	if l == nil {
		return ErrNotHeld
	}
	if ctx == nil {
		return invalidf("ctx", "nil", "must not be nil")
	}
	l.mu.Lock()
	if l.x == nil && l.ended == notEnded && !l.m.closed.Load() && l.parent.Err() == nil {
		// The common case in process: a lease of the memory backend that
		// nobody watched, still held. Nothing to cancel, wait for or tell.
		if l.obs != nil {
			return l.releaseObservedLocked(ctx)
		}
		l.ended, l.state = endReleased, released
		var err error
		if ctx.Done() == nil {
			err = l.m.b.Release(ctx, l.requestLocked())
		} else {
			rctx, cancel := cleanupContext(ctx)
			err = l.m.b.Release(rctx, l.requestLocked())
			cancel()
		}
		if err != nil {
			l.extras().relErr = err
		}
		l.mu.Unlock()
		return err
	}
	cause := l.causeLocked()
	if l.m.mutants.releaseFirst {
		return l.releaseFirstLocked(ctx, cause)
	}
	l.endLocked(ErrReleased) // before the key is freed: no overlap with the next holder
	return l.releaseLocked(ctx, cause)
}

// release frees the key once; cause is why the lease had ended before.
func (l *Lease) release(ctx context.Context, cause error) error {
	l.mu.Lock()
	return l.releaseLocked(ctx, cause)
}

// releaseLocked frees the key once, and returns the result of doing so to
// every caller. It is called with l.mu held, and unlocks it.
func (l *Lease) releaseLocked(ctx context.Context, cause error) error {
	switch l.state {
	case released:
		defer l.mu.Unlock()
		return l.releaseErrLocked()
	case releasing:
		// Another caller is releasing the key: wait for its result.
		x := l.extras()
		if x.released == nil {
			x.released = make(chan struct{})
		}
		l.mu.Unlock()
		<-x.released
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.releaseErrLocked()
	}
	l.state = releasing
	x, req, obs := l.extras(), l.requestLocked(), l.obs
	tracked := x.tracked // read under l.mu: track writes it
	l.mu.Unlock()

	rctx, cancel := cleanupContext(ctx)
	if obs != nil {
		rctx = obs.backendContext(rctx, l.key, "release")
	}
	err := l.m.b.Release(rctx, req)
	cancel()
	// Stopped by the lease's end, the renewal may still be finishing an
	// extension; the release need not wait for it (an extension checks the
	// owner, so it never brings a released key back), but Release returns
	// only once no goroutine of the lease is at work.
	l.mu.Lock()
	for x.renewing {
		if x.renewIdle == nil {
			x.renewIdle = make(chan struct{})
		}
		idle := x.renewIdle
		l.mu.Unlock()
		<-idle
		l.mu.Lock()
	}
	l.mu.Unlock()
	if tracked {
		l.m.live.remove(l)
	}
	if errors.Is(err, ErrNotHeld) && cause == nil {
		// The key expired while the release was on its way: report the
		// lease's end, as if it had been noticed before.
		l.mu.Lock()
		if !l.pinned && !time.Now().Before(x.deadline) {
			cause = l.expiredCause()
		}
		l.mu.Unlock()
	}
	if errors.Is(cause, ErrLeaseLost) || errors.Is(cause, ErrExpired) {
		err = cause
	}

	l.mu.Lock()
	l.state, x.relErr = released, err
	if x.released != nil {
		close(x.released)
	}
	var ev leaseEvents
	if l.obs != nil {
		ended := cause
		if ended == nil {
			ended = l.causeLocked()
		}
		l.lossLocked(&ev, ended)
		l.releasedLocked(&ev, ended, err)
	}
	l.mu.Unlock()
	ev.send()
	return err
}

func (l *Lease) releaseErrLocked() error {
	if l.x == nil {
		return nil
	}
	return l.x.relErr
}

// giveBack frees the key of a lease that was never handed out.
func (l *Lease) giveBack(ctx context.Context) {
	l.mu.Lock()
	l.obs = nil // nothing to tell of a lease nobody had
	l.endLocked(ErrNotAcquired)
	l.mu.Unlock()
	_ = l.release(ctx, nil)
}

// start makes the lease follow its parent context and renew itself, as its
// settings ask. It fails after Close.
func (l *Lease) start() error {
	// A lease with a deadline is tracked, so that Close frees its key on
	// the backend. A pinned lease is not: its context, once made, is
	// tracked then, it notices Close when asked, and its backend forgets
	// its key on Close.
	if !l.pinned && !l.track() {
		return ErrClosed
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended != notEnded {
		// Close ended the lease between track and here: serve it no more.
		return ErrClosed
	}
	x := l.extras()
	if l.parent.Done() != nil {
		x.stopParent = context.AfterFunc(l.parent, l.onParentDone)
	}
	if l.renews {
		// A timer, not a goroutine: most leases are released before their
		// first renewal, and a goroutine per lease would cost them all.
		x.renewTimer = time.AfterFunc(x.ttl/3, l.renewTick)
	}
	return nil
}

// track adds l to the leases Close ends, once, and reports false if the
// Mutex is closed.
func (l *Lease) track() bool {
	l.mu.Lock()
	done := l.x != nil && l.x.tracked || l.state != held
	l.mu.Unlock()
	if done {
		return true
	}
	if err := l.m.live.add(l); err != nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.extras().tracked = true
	if l.state != held {
		// Released meanwhile, perhaps before it was added: take it out.
		l.m.live.remove(l)
	}
	return true
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
	var ev leaseEvents
	l.mu.Lock()
	if l.m.mutants.lateRenewal && l.x.renewing {
		l.mu.Unlock()
		return
	}
	if l.ended == notEnded && time.Now().Before(l.x.deadline) {
		l.x.timer.Reset(time.Until(l.x.deadline))
		l.mu.Unlock()
		return
	}
	l.lossLocked(&ev, l.causeLocked())
	l.mu.Unlock()
	ev.send()
}

// renewTick extends the lease, on its renewal timer's goroutine, and sets
// the timer for the next time: a third of the TTL later, or sooner after a
// failed extension, while the deadline leaves time for a try. When the
// deadline passes, or the backend says the key is no longer held, the lease
// ends with ErrLeaseLost and the timer is not set again.
func (l *Lease) renewTick() {
	l.mu.Lock()
	x := l.x
	if l.ended != notEnded {
		l.mu.Unlock()
		return
	}
	if x.renewCtx == nil {
		x.renewCtx, x.stopRenew = context.WithCancel(context.WithoutCancel(l.parent))
	}
	x.renewing = true
	ctx, ttl := x.renewCtx, x.ttl
	l.mu.Unlock()

	ev := leaseEvents{auto: true}
	x.extendMu.Lock()
	held, err := l.extend(ctx, ttl, &ev)
	x.extendMu.Unlock()
	ev.send()

	l.mu.Lock()
	defer l.mu.Unlock()
	x.renewing = false
	if x.renewIdle != nil {
		close(x.renewIdle)
		x.renewIdle = nil
	}
	if !held || l.ended != notEnded {
		return
	}
	next := x.ttl / 3
	if err != nil {
		next = max(min(next, time.Until(x.deadline)/2), time.Millisecond)
	}
	x.renewTimer.Reset(next)
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
	if l.ended == notEnded {
		switch {
		case l.m.closed.Load():
			l.endLocked(ErrClosed)
		case !l.pinned && !time.Now().Before(l.x.deadline):
			l.endLocked(l.expiredCause())
		case l.parent.Err() != nil:
			l.endLocked(context.Cause(l.parent))
		}
	}
	switch l.ended {
	case endReleased:
		return ErrReleased
	case endClosed:
		return ErrClosed
	case endExpired:
		return ErrExpired
	case endOther:
		return l.x.cause
	}
	return nil
}

// expiredCause is the cause of a lease that reached its deadline.
func (l *Lease) expiredCause() error {
	if l.renews {
		return fmt.Errorf("%w: not renewed by its deadline", ErrLeaseLost)
	}
	return ErrExpired
}

// endLocked records cause, cancels the lease's context, and stops what
// serves the lease. It does nothing if the lease has ended already.
func (l *Lease) endLocked(cause error) {
	if l.ended != notEnded {
		return
	}
	switch cause {
	case ErrReleased:
		l.ended = endReleased
	case ErrClosed:
		l.ended = endClosed
	case ErrExpired:
		l.ended = endExpired
	default:
		l.extras().cause = cause
		l.ended = endOther
	}
	if x := l.x; x != nil {
		if x.cancel != nil {
			x.cancel(cause)
		}
		if x.timer != nil {
			x.timer.Stop()
		}
		if x.stopParent != nil {
			x.stopParent()
		}
		if x.renewTimer != nil {
			x.renewTimer.Stop()
		}
		if x.stopRenew != nil {
			x.stopRenew()
		}
	}
}
