package lock

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// An Observer is told what a Mutex and its leases do, for logs and metrics:
// each Acquire's outcome, each renewal, each loss and each release, and each
// failure of one node of a backend. WithObserver sets one; WithLogger sets
// one that logs. Package lockotel records them as OpenTelemetry metrics.
//
// An Observer must be safe for concurrent use. Its methods are called on the
// goroutine where the event happens, with no lock of the Mutex or Lease held:
// the caller's goroutine, a lease's renewal goroutine, a timer's, or a
// backend's node goroutine. They should return quickly, and must not call
// Lease.Release or Mutex.Close, which wait for some of those goroutines to
// exit. The ctx they get carries the values of the context the event comes
// from, and may be done: the context given to Acquire for the events of an
// Acquire call and of its lease, that of the backend call for NodeError.
//
// No event holds a lock's value, the backend's proof of ownership, so none
// can leak it into logs or metrics. The events are structs so that they can
// gain fields without breaking Observers.
type Observer interface {
	// Acquired is called once per call of Acquire, TryAcquire or AcquireNS
	// that reached the backend, as it returns: with the lease's token if it
	// succeeded, with its error if not.
	Acquired(ctx context.Context, e AcquireEvent)

	// Renewed is called after each extension of a lease, by its own renewal
	// or by Lease.Extend, whether the backend extended it or not.
	Renewed(ctx context.Context, e RenewEvent)

	// Lost is called once when a lease ends without its holder's Release:
	// when its renewal was refused or did not succeed by its deadline
	// (ErrLeaseLost), or when a lease that does not renew itself reached its
	// deadline (ErrExpired). Lost comes when the lease notices, which is at
	// the latest when Release is called.
	Lost(ctx context.Context, e LeaseEvent)

	// Released is called once for every lease Acquire returned, when its key
	// is given back to the backend: by Release, by Close, or when the context
	// given to Acquire ended.
	Released(ctx context.Context, e ReleaseEvent)

	// NodeError is called for each failure of one node of a backend that
	// keeps a lock on several, such as package rueidislock, also when the
	// call succeeded on enough other nodes. Backends report them with
	// ReportNodeError. It may be called after the call that caused it
	// returned.
	NodeError(ctx context.Context, e NodeErrorEvent)
}

// An AcquireEvent is the outcome of a call of Acquire, TryAcquire or
// AcquireNS.
type AcquireEvent struct {
	Key   string // the backend key, namespace included
	Token uint64 // the lease's fencing token; zero if Err is not nil

	// Attempts is how many times the Mutex asked the backend for the key:
	// its calls of Backend.Acquire and of Waiter.Wait, each of which may try
	// more than once.
	Attempts int

	// Wait is the time from the end of the first attempt, if it failed, to
	// the return of the call; zero if the first attempt succeeded.
	Wait time.Duration

	// Latency is the time the call took, waits included.
	Latency time.Duration

	// Err is nil if the key was acquired, and otherwise the call's error.
	Err error
}

// A RenewEvent is the outcome of an extension of a lease.
type RenewEvent struct {
	Key     string        // the backend key
	Token   uint64        // the lease's fencing token
	TTL     time.Duration // the TTL asked for
	Latency time.Duration // the time the backend took to answer
	Auto    bool          // made by the lease's own renewal, not Lease.Extend

	// Err is nil if the lease was extended. Otherwise it is the extension's
	// error: a lease that is still held after it (an error that left the
	// backend's state unknown) goes on until its deadline; one that is not
	// also gets a Lost event.
	Err error
}

// A LeaseEvent tells of a lease that ended before its holder released it.
type LeaseEvent struct {
	Key   string        // the backend key
	Token uint64        // the lease's fencing token
	Held  time.Duration // from the grant to the end of the lease
	Cause error         // why it ended: matches ErrLeaseLost or ErrExpired
}

// A ReleaseEvent tells of a lease whose key was given back to the backend.
type ReleaseEvent struct {
	Key   string        // the backend key
	Token uint64        // the lease's fencing token
	Held  time.Duration // from the grant to the release

	// Cause is why the lease ended, as Lease.Err says: ErrReleased after
	// Release, ErrClosed after Close, the cause of the end of the context
	// given to Acquire, or the loss that ended it before.
	Cause error

	// Err is the result of the release, as Release returns it.
	Err error
}

// A NodeErrorEvent tells of a failure of one node of a backend.
type NodeErrorEvent struct {
	Key  string // the backend key of the call
	Op   string // the call: "acquire", "extend" or "release"
	Node int    // the node's index in the backend
	Addr string // the node's address, without credentials
	Err  error  // what the node answered, or why it did not
}

// WithLogger logs what the Mutex and its leases do to logger: acquisitions,
// waits and releases at slog.LevelDebug; failed renewals, losses, failed
// releases and node errors at slog.LevelWarn. A line names the key, the
// token, durations, attempts and errors, never a lock's value. A nil logger
// logs nothing. It works beside WithObserver. Default: none.
func WithLogger(logger *slog.Logger) Option {
	return func(s *settings) {
		s.obs.log = nil
		if logger != nil {
			s.obs.log = logObserver{logger}
		}
	}
}

// WithObserver sets the Observer told of what the Mutex and its leases do.
// A nil Observer is told nothing. It works beside WithLogger. Default: none.
func WithObserver(o Observer) Option {
	return func(s *settings) { s.obs.user = o }
}

// ReportNodeError tells the Observer of the backend call whose context is
// ctx that the node with index node, at addr, failed with err. A backend
// that keeps a lock on several nodes calls it for each failure of one node,
// including failures that did not change the outcome because enough other
// nodes answered, from any goroutine, with the context it got from the
// Mutex or one derived from it. addr must hold no credentials. It does
// nothing, at little cost, when the call has no Observer.
func ReportNodeError(ctx context.Context, node int, addr string, err error) {
	if ctx == nil || err == nil {
		return
	}
	r, _ := ctx.Value(reportKey{}).(*report)
	if r == nil {
		return
	}
	r.obs.nodeError(ctx, NodeErrorEvent{Key: r.key, Op: r.op, Node: node, Addr: addr, Err: err})
}

// observers is what WithLogger and WithObserver set; either may be nil.
// Keeping the two apart, rather than joining them in one Observer, spares
// an allocation when a call's options change one of them.
type observers struct {
	log  Observer // a logObserver
	user Observer
}

func (o *observers) on() bool { return o.log != nil || o.user != nil }

func (o *observers) acquired(ctx context.Context, e AcquireEvent) {
	if o.log != nil {
		o.log.Acquired(ctx, e)
	}
	if o.user != nil {
		o.user.Acquired(ctx, e)
	}
}

func (o *observers) renewed(ctx context.Context, e RenewEvent) {
	if o.log != nil {
		o.log.Renewed(ctx, e)
	}
	if o.user != nil {
		o.user.Renewed(ctx, e)
	}
}

func (o *observers) lost(ctx context.Context, e LeaseEvent) {
	if o.log != nil {
		o.log.Lost(ctx, e)
	}
	if o.user != nil {
		o.user.Lost(ctx, e)
	}
}

func (o *observers) released(ctx context.Context, e ReleaseEvent) {
	if o.log != nil {
		o.log.Released(ctx, e)
	}
	if o.user != nil {
		o.user.Released(ctx, e)
	}
}

func (o *observers) nodeError(ctx context.Context, e NodeErrorEvent) {
	if o.log != nil {
		o.log.NodeError(ctx, e)
	}
	if o.user != nil {
		o.user.NodeError(ctx, e)
	}
}

// reportKey is the context key of a *report.
type reportKey struct{}

// report is what ReportNodeError needs to know of the call it reports for.
// It is a context of its own, rather than a value in a context.WithValue,
// to cost one allocation per backend call instead of two.
type report struct {
	context.Context
	obs *observers
	key string
	op  string
}

// Value returns r for reportKey, and otherwise the parent's value.
func (r *report) Value(key any) any {
	if key == (reportKey{}) {
		return r
	}
	return r.Context.Value(key)
}

// backendContext returns ctx carrying what ReportNodeError needs for a
// backend call op on key; o must not change after. The result is given to
// the backend only, never to the caller: a lease's context, which the caller
// gets, derives from Acquire's own ctx, so that a Mutex without observers
// never reports to another's.
func (o *observers) backendContext(ctx context.Context, key, op string) context.Context {
	return &report{Context: ctx, obs: o, key: key, op: op}
}

// acquireStats counts what an observed Acquire call did.
type acquireStats struct {
	attempts int
	since    time.Time // when the first wait began; zero if none
}

// acquireObserved does what acquire does after its checks, when the call has
// observers: the same attempts, with backend calls that report node errors,
// and the outcome sent to the observers. It is apart so that the common,
// unobserved call pays for none of it.
func (m *Mutex) acquireObserved(ctx context.Context, s *settings, retries int, req Request, counted bool) (*Lease, error) {
	// A counted Acquire (see acquire) stops counting before the Observer
	// hears of it: Close waits for the Acquire, and must not wait for a
	// callback.
	uncount := func() {
		if counted {
			counted = false
			m.acquiring.Done()
		}
	}
	defer uncount()
	start := time.Now()
	st := acquireStats{attempts: 1}
	bctx := s.obs.backendContext(ctx, req.Key, "acquire")
	res, err := m.b.Acquire(bctx, req)
	var l *Lease
	if err == nil && res.Acquired {
		var gerr error
		l, gerr = m.grant(ctx, s, &req, &res)
		if l == nil && ctx.Err() == nil && !errors.Is(gerr, ErrClosed) {
			l, gerr = m.retry(ctx, bctx, s, retries, req, res, err, &st)
		}
		err = gerr
	} else {
		l, err = m.retry(ctx, bctx, s, retries, req, res, err, &st)
	}
	now := time.Now()
	e := AcquireEvent{Key: req.Key, Attempts: st.attempts, Latency: now.Sub(start), Err: err}
	if !st.since.IsZero() {
		e.Wait = now.Sub(st.since)
	}
	if l != nil {
		e.Token = l.token
	}
	uncount()
	s.obs.acquired(ctx, e)
	return l, err
}

// leaseObs is what a lease with observers keeps for them.
type leaseObs struct {
	observers
	granted time.Time // when the grant became a lease
	told    bool      // Lost was sent; guarded by the lease's mu
}

func newLeaseObs(o *observers) *leaseObs {
	return &leaseObs{observers: *o, granted: time.Now()}
}

// leaseEvents holds what one step of a lease has to tell its observers: it
// is filled with the lease's mu held, and sent once the step has let go of
// the lease's locks, so that an Observer can neither block nor re-enter them.
type leaseEvents struct {
	obs      *leaseObs
	ctx      context.Context
	auto     bool // the step is the lease's own renewal
	renewed  bool
	renew    RenewEvent
	lost     bool
	loss     LeaseEvent
	released bool
	release  ReleaseEvent
}

func (ev *leaseEvents) bindLocked(l *Lease) bool {
	if l.obs == nil {
		return false
	}
	ev.obs, ev.ctx = l.obs, l.parent
	return true
}

// renewLocked notes an extension by ttl that began at start and ended with err.
func (l *Lease) renewLocked(ev *leaseEvents, ttl time.Duration, start time.Time, err error) {
	if !ev.bindLocked(l) {
		return
	}
	ev.renewed = true
	ev.renew = RenewEvent{Key: l.key, Token: l.token, TTL: ttl, Latency: time.Since(start), Auto: ev.auto, Err: err}
}

// lossLocked notes the end of the lease with cause, if it is a loss not told
// before.
func (l *Lease) lossLocked(ev *leaseEvents, cause error) {
	if cause == nil || !isLoss(cause) || !ev.bindLocked(l) || l.obs.told {
		return
	}
	l.obs.told = true
	ev.lost = true
	ev.loss = LeaseEvent{Key: l.key, Token: l.token, Held: time.Since(l.obs.granted), Cause: cause}
}

// releasedLocked notes the release of the key, with err, of a lease that
// ended with cause.
func (l *Lease) releasedLocked(ev *leaseEvents, cause, err error) {
	if !ev.bindLocked(l) {
		return
	}
	ev.released = true
	ev.release = ReleaseEvent{Key: l.key, Token: l.token, Held: time.Since(l.obs.granted), Cause: cause, Err: err}
}

// send tells the observers what was noted. It is called with no lock held.
func (ev *leaseEvents) send() {
	o := ev.obs
	if o == nil {
		return
	}
	if ev.renewed {
		o.renewed(ev.ctx, ev.renew)
	}
	if ev.lost {
		o.lost(ev.ctx, ev.loss)
	}
	if ev.released {
		o.released(ev.ctx, ev.release)
	}
}

// releaseObservedLocked is the quick path of Release for a lease with
// observers: the key is freed as there, and the release told. It is called
// with l.mu held, and unlocks it.
func (l *Lease) releaseObservedLocked(ctx context.Context) error {
	l.ended, l.state = endReleased, released
	rctx, cancel := cleanupContext(ctx)
	err := l.m.b.Release(l.obs.backendContext(rctx, l.key, "release"), l.requestLocked())
	cancel()
	if err != nil {
		l.extras().relErr = err
	}
	var ev leaseEvents
	l.releasedLocked(&ev, ErrReleased, err)
	l.mu.Unlock()
	ev.send()
	return err
}

// isLoss reports whether a lease that ended with cause was lost.
func isLoss(cause error) bool {
	return errors.Is(cause, ErrLeaseLost) || errors.Is(cause, ErrExpired)
}

// logObserver is the Observer of WithLogger.
type logObserver struct{ l *slog.Logger }

func (o logObserver) Acquired(ctx context.Context, e AcquireEvent) {
	if !o.l.Enabled(ctx, slog.LevelDebug) {
		return
	}
	msg := "lock acquired"
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("key", e.Key))
	switch {
	case e.Err != nil:
		msg = "lock not acquired"
	case e.Wait > 0 || e.Attempts > 1:
		msg = "lock acquired after waiting"
		attrs = append(attrs, slog.Uint64("token", e.Token))
	default:
		attrs = append(attrs, slog.Uint64("token", e.Token))
	}
	attrs = append(attrs, slog.Int("attempts", e.Attempts), slog.Duration("wait", e.Wait), slog.Duration("latency", e.Latency))
	if e.Err != nil {
		attrs = append(attrs, slog.Any("error", e.Err))
	}
	o.l.LogAttrs(ctx, slog.LevelDebug, msg, attrs...)
}

func (o logObserver) Renewed(ctx context.Context, e RenewEvent) {
	msg, level := "lock renewed", slog.LevelDebug
	if e.Err != nil {
		msg, level = "lock renewal failed", slog.LevelWarn
	}
	if !o.l.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("key", e.Key), slog.Uint64("token", e.Token), slog.Duration("ttl", e.TTL),
		slog.Duration("latency", e.Latency), slog.Bool("auto", e.Auto),
	}
	if e.Err != nil {
		attrs = append(attrs, slog.Any("error", e.Err))
	}
	o.l.LogAttrs(ctx, level, msg, attrs...)
}

func (o logObserver) Lost(ctx context.Context, e LeaseEvent) {
	o.l.LogAttrs(ctx, slog.LevelWarn, "lock lost",
		slog.String("key", e.Key), slog.Uint64("token", e.Token), slog.Duration("held", e.Held), slog.Any("cause", e.Cause))
}

func (o logObserver) Released(ctx context.Context, e ReleaseEvent) {
	// A loss was logged when it was noticed, and Close fails every release
	// after it: neither is worth a warning again.
	level := slog.LevelDebug
	if e.Err != nil && !isLoss(e.Err) && !errors.Is(e.Err, ErrClosed) {
		level = slog.LevelWarn
	}
	if !o.l.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{slog.String("key", e.Key), slog.Uint64("token", e.Token), slog.Duration("held", e.Held)}
	if e.Cause != nil && e.Cause != ErrReleased {
		attrs = append(attrs, slog.Any("cause", e.Cause))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.Any("error", e.Err))
	}
	o.l.LogAttrs(ctx, level, "lock released", attrs...)
}

func (o logObserver) NodeError(ctx context.Context, e NodeErrorEvent) {
	o.l.LogAttrs(ctx, slog.LevelWarn, "lock node error",
		slog.String("key", e.Key), slog.String("op", e.Op), slog.Int("node", e.Node), slog.String("addr", e.Addr), slog.Any("error", e.Err))
}

// count counts an attempt, if st is not nil.
func (st *acquireStats) count() {
	if st != nil {
		st.attempts++
	}
}
