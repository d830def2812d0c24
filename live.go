package lock

import "sync"

// liveShards is the number of parts of a Mutex's set of live leases.
const liveShards = 16

// liveSet holds the leases that Close must end: those that own a goroutine,
// and those whose context someone may watch. A lease of the memory backend
// that nobody watches is not in it: it notices Close when next asked.
// The set is split so that parallel calls on distinct keys rarely meet on
// one mutex.
type liveSet struct {
	shards [liveShards]liveShard
}

type liveShard struct {
	mu     sync.Mutex
	closed bool
	leases map[*Lease]struct{}
	_      [40]byte // keeps neighbouring shards off one cache line
}

func (s *liveSet) shard(l *Lease) *liveShard {
	return &s.shards[l.token%liveShards]
}

// add records l, unless the set was closed: then it returns ErrClosed.
func (s *liveSet) add(l *Lease) error {
	sh := s.shard(l)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed {
		return ErrClosed
	}
	if sh.leases == nil {
		sh.leases = make(map[*Lease]struct{})
	}
	sh.leases[l] = struct{}{}
	return nil
}

func (s *liveSet) remove(l *Lease) {
	sh := s.shard(l)
	sh.mu.Lock()
	delete(sh.leases, l)
	sh.mu.Unlock()
}

// close makes later adds fail and returns the leases in the set.
func (s *liveSet) close() []*Lease {
	var all []*Lease
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.closed = true
		for l := range sh.leases {
			all = append(all, l)
		}
		sh.leases = nil
		sh.mu.Unlock()
	}
	return all
}
