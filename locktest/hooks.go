package locktest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/leaselock/lock"
)

// hooks sit between a Mutex and its backend, so that a subtest can see what
// the Mutex asks of the backend: that a waiter has made an attempt that
// failed, and when and how often a key is released.
type hooks struct {
	mu        sync.Mutex
	failures  map[string]int           // attempts per key that found it held
	watches   []watch                  // channels to close when failures reach a count
	attempts  map[string]int           // attempts per key: Acquire and Wait calls
	waits     map[string]chan struct{} // per key, closed when a Wait call begins
	releases  map[release]int          // Release calls per key and token
	onRelease func(lock.Request)       // called before the backend's Release

	afterWait   func(key string) // called when a Wait returns
	beforeClose func()           // called before the backend's Close
}

// watch is a channel closed once a key's failures reach n.
type watch struct {
	key string
	n   int
	ch  chan struct{}
}

type release struct {
	key   string
	token uint64
}

func newHooks() *hooks {
	return &hooks{
		failures: make(map[string]int),
		attempts: make(map[string]int),
		releases: make(map[release]int),
	}
}

// wrap returns b with the hooks in front of it. The result implements
// lock.Waiter if b does, so that the Mutex behaves as it would with b.
func (h *hooks) wrap(b lock.Backend) lock.Backend {
	hb := &hookBackend{Backend: b, h: h}
	if w, ok := b.(lock.Waiter); ok {
		return &hookWaiter{hookBackend: hb, w: w}
	}
	return hb
}

// failedAttempts returns a channel closed once n attempts on key have failed
// because another owner held it, counted since the hooks were made. After
// the first failure of an Acquire call, its caller is waiting: queued in
// the backend or between retries.
func (h *hooks) failedAttempts(key string, n int) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := make(chan struct{})
	if h.failures[key] >= n {
		close(ch)
	} else {
		h.watches = append(h.watches, watch{key, n, ch})
	}
	return ch
}

// failureCount returns the number of attempts on key that failed because
// another owner held it.
func (h *hooks) failureCount(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failures[key]
}

// attempted records an attempt on key and whether it failed.
func (h *hooks) attempted(key string, failed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts[key]++
	if !failed {
		return
	}
	h.failures[key]++
	n := h.failures[key]
	h.watches = slices.DeleteFunc(h.watches, func(w watch) bool {
		if w.key == key && n >= w.n {
			close(w.ch)
			return true
		}
		return false
	})
}

// attemptCount returns the number of Acquire and Wait calls on key.
func (h *hooks) attemptCount(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.attempts[key]
}

// releaseCount returns the number of Release calls for the holder of key
// with token.
func (h *hooks) releaseCount(key string, token uint64) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.releases[release{key, token}]
}

// setOnRelease sets the function called before each backend Release.
func (h *hooks) setOnRelease(f func(lock.Request)) {
	h.mu.Lock()
	h.onRelease = f
	h.mu.Unlock()
}

// waitStarted returns a channel closed once a Wait call on key has begun.
func (h *hooks) waitStarted(key string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waits == nil {
		h.waits = make(map[string]chan struct{})
	}
	c := h.waits[key]
	if c == nil {
		c = make(chan struct{})
		h.waits[key] = c
	}
	return c
}

// setAfterWait sets the function called when a Wait call returns.
func (h *hooks) setAfterWait(f func(key string)) {
	h.mu.Lock()
	h.afterWait = f
	h.mu.Unlock()
}

// setBeforeClose sets the function called before the backend's Close.
func (h *hooks) setBeforeClose(f func()) {
	h.mu.Lock()
	h.beforeClose = f
	h.mu.Unlock()
}

type hookBackend struct {
	lock.Backend
	h *hooks
}

func (b *hookBackend) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	res, err := b.Backend.Acquire(ctx, req)
	b.h.attempted(req.Key, err == nil && !res.Acquired)
	return res, err
}

func (b *hookBackend) Release(ctx context.Context, req lock.Request) error {
	b.h.mu.Lock()
	b.h.releases[release{req.Key, req.Token}]++
	f := b.h.onRelease
	b.h.mu.Unlock()
	if f != nil {
		f(req)
	}
	return b.Backend.Release(ctx, req)
}

func (b *hookBackend) Close() error {
	b.h.mu.Lock()
	f := b.h.beforeClose
	b.h.mu.Unlock()
	if f != nil {
		f()
	}
	return b.Backend.Close()
}

type hookWaiter struct {
	*hookBackend
	w lock.Waiter
}

// Leave passes a waiter's leaving on to a backend that keeps something for
// it between attempts, as the Mutex would without the hooks.
func (b *hookWaiter) Leave(ctx context.Context, req lock.Request) {
	if lv, ok := b.w.(lock.Leaver); ok {
		lv.Leave(ctx, req)
	}
}

func (b *hookWaiter) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	// A wait is an attempt too: it takes the key if it is free.
	b.h.attempted(req.Key, false)
	b.h.waitStarted(req.Key) // makes the channel if no one asked yet
	b.h.mu.Lock()
	if started := b.h.waits[req.Key]; !isClosed(started) {
		close(started)
	}
	b.h.mu.Unlock()
	res, err := b.w.Wait(ctx, req, d)
	b.h.mu.Lock()
	f := b.h.afterWait
	b.h.mu.Unlock()
	if f != nil {
		f(req.Key)
	}
	return res, err
}
