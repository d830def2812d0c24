package memory

import (
	"sync"
	"time"

	"github.com/leaselock/lock"
)

// shard is a part of the key space with its own mutex.
type shard struct {
	mu      sync.Mutex
	entries map[uint64]*entry // by hash: held keys, keys with waiters, idle keys
	count   int               // entries in the table
	peak    int               // most entries since the table was made
	spare   []*entry          // unused entries, for reuse
	token   uint64            // the last fencing token granted here
	idle    [maxIdle]idleSlot // the keys freed last, kept in the table
	idleSeq uint64            // numbers the keys made idle
	nIdle   int               // entries in the table that are idle
	closed  bool
	_       [64]byte // keeps neighbouring shards off one cache line
}

// idleSlot remembers a free key kept in its shard's table.
type idleSlot struct {
	e   *entry
	seq uint64 // e.idle when the key was made idle; stale if they differ
}

// entry is the state of one key.
type entry struct {
	shard   *shard // the shard of the key; entries are reused only there
	key     string
	hash    uint64    // of key
	next    *entry    // the next key with the same hash
	token   uint64    // the holder's fencing token; 0 when free
	idle    uint64    // the idleSeq that made this free key idle; 0 if not idle
	expires time.Time // when the holder's key expires; zero: not before Release
	waiters []*waiter // waiting Acquire calls, oldest first
	woken   bool      // a waiter was woken to try and has not tried yet
}

// lookup returns the entry of key, whose hash is h, or nil.
func (s *shard) lookup(h uint64, key string) *entry {
	e := s.entries[h]
	for e != nil && e.key != key {
		e = e.next // two keys with one 64-bit hash: rare, but possible
	}
	return e
}

// insertLocked adds an entry for key, whose hash is h.
func (s *shard) insertLocked(h uint64, key string) *entry {
	e := &entry{shard: s}
	if n := len(s.spare); n > 0 {
		e = s.spare[n-1]
		s.spare = s.spare[:n-1]
	}
	e.key, e.hash, e.next = key, h, s.entries[h]
	s.entries[h] = e
	s.count++
	s.peak = max(s.peak, s.count)
	return e
}

// deleteLocked takes the idle entry e out of the table and keeps it for
// reuse.
func (s *shard) deleteLocked(e *entry) {
	if head := s.entries[e.hash]; head == e {
		if e.next == nil {
			delete(s.entries, e.hash)
		} else {
			s.entries[e.hash] = e.next
		}
	} else {
		for head.next != e {
			head = head.next
		}
		head.next = e.next
	}
	s.count--
	s.nIdle--
	if len(s.spare) < maxSpare {
		*e = entry{shard: s, waiters: e.waiters[:0]}
		s.spare = append(s.spare, e)
	}
}

// tryLocked takes req.Key, whose hash is h, if it is free, or reports its
// holder's TTL, in res. Request and Result go by pointer: they are large.
func (s *shard) tryLocked(h uint64, req *lock.Request, res *lock.Result) {
	e := s.lookup(h, req.Key)
	if e == nil {
		s.grantLocked(s.insertLocked(h, req.Key), req, res)
		return
	}
	var now time.Time
	if e.token != 0 && !e.expires.IsZero() {
		now = time.Now()
		if !now.Before(e.expires) {
			// The holder's key has expired: free it, as a release would.
			// That may take it out of the table: look it up again.
			s.releaseLocked(e, now)
			if e = s.lookup(h, req.Key); e == nil {
				s.grantLocked(s.insertLocked(h, req.Key), req, res)
				return
			}
		}
	}
	if e.token != 0 {
		if !e.expires.IsZero() {
			res.HolderTTL = e.expires.Sub(now)
		}
		return
	}
	// The key is free while waiters are queued: one of them was woken to
	// compete for it. A caller may take it ahead of them, unless the oldest
	// has waited long enough to starve and began before the caller.
	if len(e.waiters) > 0 {
		if now.IsZero() {
			now = time.Now()
		}
		w := e.waiters[0]
		older := req.Since.IsZero() || w.req.Since.Before(req.Since) // zero: a first attempt
		if older && now.Sub(w.req.Since) >= starveAfter {
			s.handLocked(e, e.popHead())
			return
		}
	}
	s.grantLocked(e, req, res)
}

// grantLocked gives e to req with a new fencing token, described in res.
func (s *shard) grantLocked(e *entry, req *lock.Request, res *lock.Result) {
	if e.idle != 0 {
		e.idle = 0
		s.nIdle--
	}
	s.token++
	e.token = s.token
	e.expires = time.Time{}
	if req.Renew {
		// A lease that renews itself in this process cannot fail to renew:
		// keep the key until Release, with no expiry to check.
		*res = lock.Result{Acquired: true, Token: e.token, Pinned: true, Handle: e}
		return
	}
	now := time.Now()
	e.expires = now.Add(req.TTL)
	*res = lock.Result{Acquired: true, Token: e.token, Start: now, Handle: e}
}

// releaseLocked frees e. The oldest waiter is handed the key if it has
// waited long enough to starve, and woken to compete for it otherwise. now
// is the current time if the caller knows it.
func (s *shard) releaseLocked(e *entry, now time.Time) {
	e.token = 0
	e.expires = time.Time{}
	if len(e.waiters) == 0 {
		s.idleLocked(e)
		return
	}
	if e.woken {
		return // a woken waiter will try; one at a time
	}
	if now.IsZero() {
		now = time.Now()
	}
	w := e.popHead()
	if now.Sub(w.req.Since) >= starveAfter {
		s.handLocked(e, w)
		return
	}
	e.woken, w.woken = true, true
	w.signal()
}

// handLocked gives the free key of e to the waiter w, taken off the queue.
func (s *shard) handLocked(e *entry, w *waiter) {
	s.grantLocked(e, &w.req, &w.res)
	w.handed = true
	w.signal()
}

// idleLocked is called when e is free and has no waiters. The key stays in
// the table as one of the shard's idle keys, so that locking it again costs
// no insert; the oldest idle key, if there are too many, is deleted.
func (s *shard) idleLocked(e *entry) {
	s.idleSeq++
	slot := &s.idle[s.idleSeq%maxIdle]
	if old := slot.e; old != nil && old.idle == slot.seq {
		s.deleteLocked(old)
	}
	e.idle = s.idleSeq
	*slot = idleSlot{e: e, seq: s.idleSeq}
	s.nIdle++

	// A Go map keeps its size after deletes: make a new one once a burst
	// of keys is over, so that memory follows the keys in use.
	if s.count == s.nIdle && s.peak > 1024 {
		for i := range s.idle {
			if slot := &s.idle[i]; slot.e != nil && slot.e.idle == slot.seq {
				s.deleteLocked(slot.e)
			}
		}
		s.idle = [maxIdle]idleSlot{}
		s.entries = make(map[uint64]*entry)
		s.peak = 0
	}
}
