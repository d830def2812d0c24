package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// A Mutex locks keys in a Backend. Each key is a separate lock; a held lock
// is a Lease.
//
// A Mutex is safe for concurrent use. Create one with New; the zero Mutex is
// not usable. Close it when done: Close ends every lease still held through
// it and closes the backend.
type Mutex struct {
	b        Backend
	waiter   Waiter   // b, if it implements Waiter
	leaver   bool     // b implements Leaver
	defaults settings // from New's options, validated
	err      error    // from New's arguments; returned by every call

	closed    atomic.Bool
	closing   sync.RWMutex       // held by Close while it sets closed
	acquiring sync.WaitGroup     // Acquires under way, which Close waits for
	closeCtx  context.Context    // done when Close begins: ends waits between attempts
	closeNow  context.CancelFunc // ends closeCtx
	live      liveSet            // the leases Close must end

	mutants mutants // negative controls: zero in production
}

// New returns a Mutex that locks keys in b, with opts as the defaults of
// every call. New takes ownership of b: Mutex.Close closes it.
//
// New does not fail: a nil backend or a bad option makes every call of the
// Mutex return an error matching ErrInvalid that names it.
func New(b Backend, opts ...Option) *Mutex {
	m := &Mutex{b: b}
	m.closeCtx, m.closeNow = context.WithCancel(context.Background())
	m.defaults = defaultSettings()
	for _, o := range opts {
		if o != nil {
			o(&m.defaults)
		}
	}
	m.err = m.defaults.validate()
	if b == nil {
		m.err = invalidf("backend", "nil", "must not be nil")
	}
	m.waiter, _ = b.(Waiter)
	_, m.leaver = b.(Leaver)
	return m
}

// Acquire locks key and returns its Lease. The context ctx bounds both the
// wait and the life of the lease: when ctx ends, the lease's context is
// cancelled and the key released at once, not at the end of its TTL. Work
// meant to outlive the request that started it must acquire with a context
// that outlives the request too, such as context.WithoutCancel(ctx).
//
// Acquire waits until the key is free, retrying as the options say
// (WithRetry, WithDelay, WithBackoff, WithJitter); by default until ctx is
// done. On failure it holds nothing and returns an error matching
// ErrNotAcquired, joined with ctx's error if ctx ended the wait and with the
// backend's errors if it had any. The key is used as given; see AcquireNS for
// namespaced keys.
//
// Call Release on the returned Lease when done with it.
func (m *Mutex) Acquire(ctx context.Context, key string, opts ...Option) (*Lease, error) {
	return m.acquire(ctx, key, opts, false, false)
}

// TryAcquire is Acquire with a single attempt: if another holder has key it
// returns an error matching ErrNotAcquired at once.
func (m *Mutex) TryAcquire(ctx context.Context, key string, opts ...Option) (*Lease, error) {
	return m.acquire(ctx, key, opts, true, false)
}

// AcquireNS is Acquire of key in the namespace set with WithNamespace: the
// backend key is namespace + ":" + key, as the seed's lockNs makes it. It
// fails with ErrInvalid when no namespace is set.
func (m *Mutex) AcquireNS(ctx context.Context, key string, opts ...Option) (*Lease, error) {
	return m.acquire(ctx, key, opts, false, true)
}

// Close ends every lease still held through m, with ErrClosed as the cause of
// its context, releases its key, waits for its renewal to stop, and closes the
// backend. Acquires that wait end with ErrClosed, and Close waits for them
// (on a backend that keeps waiters' places, a Leaver such as the Redis
// backend, for every Acquire under way): one the backend granted gives the
// key back, and one that waited leaves the backend's queue, before the
// backend closes. So Close must not be called from an Observer's callback,
// which an Acquire may be running. Calls made after Close return ErrClosed.
// Close is idempotent.
func (m *Mutex) Close() error {
	if m == nil {
		return nil
	}
	m.closing.Lock()
	first := m.closed.CompareAndSwap(false, true)
	m.closing.Unlock()
	if !first {
		return nil
	}
	m.closeNow()
	// The leases' releases go out together, a few at a time: one after
	// another, a slow or frozen node would cost each of them its timeout.
	var releases sync.WaitGroup
	slots := make(chan struct{}, closeReleases)
	for _, l := range m.live.close() {
		l.end(ErrClosed)
		slots <- struct{}{}
		releases.Go(func() {
			defer func() { <-slots }()
			_ = l.release(context.Background(), nil)
		})
	}
	releases.Wait()
	m.acquiring.Wait()
	if m.b == nil {
		return nil
	}
	return m.b.Close()
}

// closeReleases is how many releases of its leases Close has under way at
// once.
const closeReleases = 32

// enter counts an Acquire that waits as under way, so that Close waits
// for it, and reports true; once Close began it counts nothing and reports
// false.
func (m *Mutex) enter() bool {
	m.closing.RLock()
	defer m.closing.RUnlock()
	if m.closed.Load() {
		return false
	}
	m.acquiring.Add(1)
	return true
}

// settings returns the settings of one call: the defaults with opts applied.
// The result is shared with the Mutex, and must not be changed.
func (m *Mutex) settings(opts []Option) (*settings, error) {
	if m.err != nil || len(opts) == 0 {
		return &m.defaults, m.err // the common case, with no copy
	}
	s := m.defaults
	for _, o := range opts {
		if o != nil {
			o(&s)
		}
	}
	return &s, s.validate()
}

func (m *Mutex) acquire(ctx context.Context, key string, opts []Option, try, namespaced bool) (*Lease, error) {
	if m == nil {
		return nil, invalidf("m", "nil", "must be made with New")
	}
	if ctx == nil {
		return nil, invalidf("ctx", "nil", "must not be nil")
	}
	s, err := m.settings(opts)
	if err != nil {
		return nil, err
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if namespaced {
		if s.namespace == "" {
			return nil, invalidf("WithNamespace", `""`, "AcquireNS needs a namespace")
		}
		key = s.namespace + ":" + key
		if err := checkKey(key); err != nil {
			return nil, err
		}
	}
	// On a Leaver, a backend that keeps waiters' places, and in practice
	// its keys, outside the process (the Redis backend), Close waits for
	// this Acquire from its first attempt on, so that a grant landing as
	// Close begins is given back while the backend is still open, not left
	// until its TTL. The memory backend, whose keys end with the process,
	// is spared the cost on its hot path (see retry).
	counted := m.leaver
	if counted {
		if !m.enter() {
			return nil, ErrClosed
		}
	} else if m.closed.Load() {
		return nil, ErrClosed
	}
	// Check ctx before the fast path, as semaphore.Acquire does: a done
	// context must not win a free key.
	if ctx.Err() != nil {
		if counted {
			m.acquiring.Done()
		}
		return nil, notAcquired(ctx, key, nil)
	}
	retries := s.retry
	if try {
		retries = 0
	}

	req := Request{Key: key, TTL: s.ttl, Drift: drift(s.ttl, s.driftFactor), Renew: s.autoExtend}
	if retries != 0 && m.leaver {
		// An Acquire that may wait tells a backend that keeps waiters'
		// places from its first attempt on, so that the backend can queue
		// it at its first refusal. Other backends are spared the cost.
		req.Since, req.Wait = waitStart(), s.delay(1)
	}
	if s.obs.on() {
		return m.acquireObserved(ctx, s, retries, req, counted)
	}
	if counted {
		defer m.acquiring.Done()
	}
	res, err := m.b.Acquire(ctx, req)
	if err == nil && res.Acquired {
		l, err := m.grant(ctx, s, &req, &res)
		if l != nil || ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return l, err
		}
		return m.retry(ctx, ctx, s, retries, req, res, err, nil)
	}
	return m.retry(ctx, ctx, s, retries, req, res, err, nil)
}

// maxErrs is how many of the backend's errors a failed Acquire reports.
const maxErrs = 4

// retry goes on with an Acquire whose first attempt, with outcome res and
// err, did not give a lease: it waits and tries again as s and retries say.
// It is apart from acquire so that the first attempt, which usually
// succeeds, runs without the loop's state. The backend is called with bctx:
// ctx, or for an observed call ctx carrying its observers. st, if not nil,
// counts the attempts.
func (m *Mutex) retry(ctx, bctx context.Context, s *settings, retries int, req Request, res Result, err error, st *acquireStats) (l *Lease, _ error) {
	// Close waits for an Acquire that goes on past its first attempt, so
	// that one the backend grants, or hands a key to, gives it back, and
	// one that waited leaves the backend's queue, before the backend
	// closes. The first attempt is counted only for a Leaver (see acquire):
	// for the memory backend its grant is the common case, which must not
	// pay for it (counting it made the distinct shape 2.5x slower).
	if !m.enter() {
		m.leave(bctx, req)
		return nil, ErrClosed
	}
	defer m.acquiring.Done()
	defer func() {
		if l == nil {
			m.leave(bctx, req)
		}
	}()
	var errs []error         // what the backend said, for the final error
	var wctx context.Context // bctx, ended by Close too: the waits' context
	if err != nil || res.Acquired {
		// An error, or a grant that came too late and was given back.
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		if errors.Is(err, ErrInvalid) {
			// The backend refused what no retry cures.
			return nil, notAcquired(ctx, req.Key, []error{err})
		}
		errs = append(errs, err)
		err, res.Acquired = nil, false
	}
	for retry := 1; ; retry++ {
		if err == nil && res.Acquired {
			l, err := m.grant(ctx, s, &req, &res)
			if l != nil || ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return l, err
			}
			errs = append(errs, err) // granted too late: try again
		} else if err != nil {
			if errors.Is(err, ErrClosed) {
				return nil, err
			}
			errs = append(errs, err)
			if errors.Is(err, ErrInvalid) {
				return nil, notAcquired(ctx, req.Key, errs)
			}
		}
		if res.Owner != "" {
			req.Owner = res.Owner
		}
		if len(errs) > maxErrs {
			// A long wait on failing nodes: keep the latest errors only.
			errs = append(errs[:0], errs[len(errs)-maxErrs:]...)
		}
		if retries >= 0 && retry > retries || ctx.Err() != nil {
			return nil, notAcquired(ctx, req.Key, errs)
		}
		if req.Since.IsZero() {
			req.Since = waitStart()
		}
		if st != nil && st.since.IsZero() {
			st.since = time.Now() // the wait the Observer reports starts here
		}

		d := req.Wait // told to the backend with the attempt
		if d == 0 {
			d = s.delay(retry)
		}
		if res.HolderTTL > 0 && res.HolderTTL < d {
			d = res.HolderTTL
		}
		if m.waiter != nil {
			if wctx == nil {
				// Close ends the waits, and waits for this Acquire.
				var cancel context.CancelFunc
				wctx, cancel = context.WithCancel(bctx)
				defer cancel()
				defer context.AfterFunc(m.closeCtx, cancel)()
			}
			wreq := req
			wreq.Handle = res.Handle // the last attempt's
			st.count()
			res, err = m.waiter.Wait(wctx, wreq, d)
			if res.Acquired || err != nil && !m.closed.Load() {
				continue
			}
			// A wait that Close ended, with an error or not, ends here.
		} else if !m.sleep(ctx, d) && !m.closed.Load() {
			return nil, notAcquired(ctx, req.Key, errs)
		}
		if ctx.Err() != nil {
			return nil, notAcquired(ctx, req.Key, errs)
		}
		if m.closed.Load() {
			return nil, ErrClosed
		}
		req.Wait = 0 // the wait after the next attempt, if there is one
		if retries < 0 || retry < retries {
			req.Wait = s.delay(retry + 1)
		}
		st.count()
		res, err = m.b.Acquire(bctx, req)
	}
}

// leave tells a backend that keeps waiters' places that the Acquire of req,
// which may have waited, ends with no lease.
func (m *Mutex) leave(ctx context.Context, req Request) {
	if req.Since.IsZero() {
		return
	}
	if lv, ok := m.waiter.(Leaver); ok {
		lv.Leave(ctx, req)
	}
}

// grant turns a successful attempt into a Lease. It gives the key back, and
// returns a nil Lease, if the grant came too late: after ctx ended, after the
// deadline, or after Close.
func (m *Mutex) grant(ctx context.Context, s *settings, req *Request, res *Result) (*Lease, error) {
	l := &Lease{
		m:      m,
		parent: ctx,
		key:    req.Key,
		token:  res.Token,
		handle: res.Handle,
		pinned: res.Pinned,
		renews: s.autoExtend && !res.Pinned,
	}
	if s.obs.on() {
		l.obs = newLeaseObs(&s.obs)
	}
	if !res.Pinned {
		l.x = &leaseExtras{owner: res.Owner, ttl: s.ttl, driftFactor: s.driftFactor}
	} else if res.Owner != "" {
		l.x = &leaseExtras{owner: res.Owner, ttl: s.ttl}
	}
	if !res.Pinned {
		l.x.deadline = res.Start.Add(s.ttl - req.Drift)
		if m.mutants.noValidityMath {
			l.x.deadline = time.Now().Add(s.ttl)
		}
		if !time.Now().Before(l.x.deadline) {
			l.giveBack(ctx)
			return nil, fmt.Errorf("%w: key %q: granted after its deadline", ErrNotAcquired, req.Key)
		}
	}
	// A grant that raced with the end of ctx is given back, so that on
	// failure Acquire holds nothing.
	if ctx.Err() != nil {
		l.giveBack(ctx)
		return nil, notAcquired(ctx, req.Key, nil)
	}
	if ctx.Done() != nil || !l.pinned {
		if err := l.start(); err != nil {
			l.giveBack(ctx)
			return nil, err
		}
	}
	// Close frees the keys of the leases it ends, which may hand one to a
	// waiter after Close began: that grant must not be returned.
	if m.closed.Load() {
		l.giveBack(ctx)
		return nil, ErrClosed
	}
	return l, nil
}

// lastWait is the latest Request.Since that waitStart gave, in Unix ns.
var lastWait atomic.Int64

// waitStart returns the time for Request.Since of an Acquire that begins
// to wait: now, made later by a nanosecond or more if another Acquire got
// that instant, so that no two waits in the process share a Since, which a
// backend may use to tell its waiters apart (rueidislock names a waiter in
// a queue on the server by it). It is kept for the process, not for each
// Mutex, since Mutexes may share a backend. Clocks too coarse to tell two
// calls apart exist, as on Windows.
func waitStart() time.Time {
	now := time.Now()
	for {
		last := lastWait.Load()
		if now.UnixNano() <= last {
			now = now.Add(time.Duration(last - now.UnixNano() + 1))
		}
		if lastWait.CompareAndSwap(last, now.UnixNano()) {
			return now
		}
	}
}

// sleep waits d, and reports false if ctx or the Mutex ended first.
func (m *Mutex) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-m.closeCtx.Done():
		return false
	}
}

// checkKey rejects keys that no backend should see.
func checkKey(key string) error {
	switch {
	case key == "":
		return invalidf("key", `""`, "must not be empty")
	case len(key) > MaxKeyLen:
		return invalidf("key", fmt.Sprintf("%.16q... (%d bytes)", key, len(key)), "must be at most %d bytes", MaxKeyLen)
	}
	return nil
}

// notAcquired is the error of a failed Acquire: ErrNotAcquired, joined with
// ctx's error if ctx is done and with the backend's errors.
func notAcquired(ctx context.Context, key string, errs []error) error {
	all := make([]error, 0, 2+len(errs))
	all = append(all, fmt.Errorf("%w: key %q", ErrNotAcquired, key))
	if err := ctx.Err(); err != nil {
		if cause := context.Cause(ctx); cause != err {
			err = fmt.Errorf("%w: %w", err, cause)
		}
		all = append(all, err)
	}
	all = append(all, errs...)
	if len(all) == 1 {
		return all[0]
	}
	return errors.Join(all...)
}

// cleanupContext returns the context for freeing a key, which must not stop
// when ctx ends: a release that gave up would leave the key held until its
// TTL. A context that can never be cancelled is used as it is; a live one is
// detached, and its backend call bounded by the backend's own timeouts; one
// that has already ended is detached and bounded by CleanupTimeout.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	switch {
	case ctx.Done() == nil:
		return ctx, func() {}
	case ctx.Err() == nil:
		return context.WithoutCancel(ctx), func() {}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), CleanupTimeout)
}

// WithLock runs fn while holding key, under a lease that renews itself, and
// releases the key when fn returns. fn's context is the lease's: it is
// cancelled if the lease is lost, and fn should stop then. WithLock returns
// fn's error, joined with the reason the lease ended if it ended before fn
// returned, or the error of Acquire.
func WithLock(ctx context.Context, m *Mutex, key string, fn func(ctx context.Context) error, opts ...Option) error {
	if fn == nil {
		return invalidf("fn", "nil", "must not be nil")
	}
	_, err := Do(ctx, m, key, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, fn(ctx)
	}, opts...)
	return err
}

// Do is WithLock for a function with a result. If fn panics, the key is
// released before the panic goes on.
func Do[T any](ctx context.Context, m *Mutex, key string, fn func(ctx context.Context) (T, error), opts ...Option) (v T, err error) {
	if m == nil {
		return v, invalidf("m", "nil", "must not be nil")
	}
	if fn == nil {
		return v, invalidf("fn", "nil", "must not be nil")
	}
	// The full slice expression keeps append from writing into the caller's array.
	l, err := m.Acquire(ctx, key, append(opts[:len(opts):len(opts)], WithAutoExtend(true))...)
	if err != nil {
		return v, err
	}
	defer func() {
		if rerr := l.Release(ctx); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	return fn(l.Context())
}
