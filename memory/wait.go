package memory

import (
	"context"
	"time"

	"github.com/leaselock/lock"
)

// waiter is one Wait call queued on a key.
type waiter struct {
	req    lock.Request
	ready  chan struct{} // receives once per hand-off, wake-up or Close
	woken  bool          // woken to try again
	handed bool          // res holds a grant made by a release
	closed bool          // the backend was closed
	res    lock.Result
}

// Wait waits for req.Key up to d, queued behind older Acquire calls.
func (b *Backend) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	h, s := b.locate(req.Key)
	w := &waiter{req: req, ready: make(chan struct{}, 1)}
	end := time.Now().Add(d)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		s.mu.Lock()
		if s.closed || w.closed {
			s.mu.Unlock()
			return lock.Result{}, lock.ErrClosed
		}
		if w.woken {
			w.woken = false
			if e := s.lookup(h, req.Key); e != nil {
				e.woken = false
			}
		}
		var res lock.Result
		s.tryLocked(h, &req, &res)
		if res.Acquired {
			s.mu.Unlock()
			return res, nil
		}
		now := time.Now()
		e := s.lookup(h, req.Key) // present: the key is held
		e.enqueue(w)
		wake := end.Sub(now)
		if !e.expires.IsZero() {
			wake = min(wake, e.expires.Sub(now))
		}
		s.mu.Unlock()

		if timer == nil {
			timer = time.NewTimer(wake)
		} else {
			timer.Reset(wake)
		}
		var done bool
		select {
		case <-w.ready:
		case <-timer.C:
			done = !time.Now().Before(end)
		case <-ctx.Done():
			done = true
		}
		s.mu.Lock()
		if w.handed {
			// A release handed the key over, perhaps as ctx ended: the
			// caller gives it back in that case.
			s.mu.Unlock()
			return w.res, nil
		}
		if done {
			s.leaveLocked(h, req.Key, w)
			s.mu.Unlock()
			return res, nil
		}
		// Woken, or the holder's key expired: try again, queued afresh.
		if e := s.lookup(h, req.Key); e != nil {
			e.remove(w)
		}
		s.mu.Unlock()
	}
}

// leaveLocked takes w off the queue of key, whose hash is h. If w was woken
// and leaves without trying, the next waiter is woken in its place.
func (s *shard) leaveLocked(h uint64, key string, w *waiter) {
	e := s.lookup(h, key)
	if e == nil {
		return
	}
	e.remove(w)
	if w.woken {
		w.woken = false
		e.woken = false
	}
	if e.token == 0 {
		if len(e.waiters) == 0 {
			s.idleLocked(e)
		} else if !e.woken {
			next := e.popHead()
			e.woken, next.woken = true, true
			next.signal()
		}
	}
}

// signal wakes the Wait call of w; a wake-up it has not seen yet suffices.
func (w *waiter) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// popHead takes the oldest waiter off the queue.
func (e *entry) popHead() *waiter {
	w := e.waiters[0]
	n := copy(e.waiters, e.waiters[1:])
	e.waiters[n] = nil // the array must not keep w alive
	e.waiters = e.waiters[:n]
	return w
}

// remove takes w off the queue, if it is there.
func (e *entry) remove(w *waiter) {
	for i, q := range e.waiters {
		if q == w {
			n := copy(e.waiters[i:], e.waiters[i+1:])
			e.waiters[i+n] = nil
			e.waiters = e.waiters[:i+n]
			return
		}
	}
}

// enqueue adds w to e's waiters, behind every Acquire call that began
// before its own. The queue is kept in that order, so that a waiter that
// timed out and came back keeps its place.
func (e *entry) enqueue(w *waiter) {
	i := len(e.waiters)
	for i > 0 && w.req.Since.Before(e.waiters[i-1].req.Since) {
		i--
	}
	e.waiters = append(e.waiters, nil)
	copy(e.waiters[i+1:], e.waiters[i:])
	e.waiters[i] = w
}
