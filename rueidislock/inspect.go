package rueidislock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
)

// A NodeState is what one node knows of a lock key, as Inspect reads it. It
// never holds the key's value, which is the holder's proof of ownership,
// only a fingerprint of it.
type NodeState struct {
	Node int    // the index of the node, in the order given to New or Dial
	Addr string // its address

	// Held reports whether the key exists on the node.
	Held bool

	// Holder is a fingerprint of the key's value: the first 8 hex digits of
	// its SHA-1, computed by the node, so that the value itself never
	// leaves it. Nodes that hold the key for the same owner show the same
	// Holder. It is empty when the key is not held.
	Holder string

	// TTL is the key's remaining time to live: zero when it is not held,
	// negative when the key has no expiry (a key that no lock set).
	TTL time.Duration

	// Fence is the node's fencing counter of the key: the largest token it
	// has stored, zero if none. It outlives the key.
	Fence uint64

	// Err is the node's error, if it could not be read; the fields above,
	// but Node and Addr, are zero then.
	Err error
}

// HolderLen is the length of NodeState.Holder: 32 bits, enough to tell
// the values of one key apart and far too few to guess a value from.
const HolderLen = 8

// inspectScript reads, without changing anything, the lock key KEYS[1] and
// its fencing counter KEYS[2]. It answers {held, holder, pttl, counter}:
// holder is the start of the SHA-1 of the value, so that the value stays
// on the node.
var inspectScript = rueidis.NewLuaScript(`
local c = redis.call('GET', KEYS[2]) or '0'
local v = redis.call('GET', KEYS[1])
if not v then
	return {0, '', 0, c}
end
return {1, string.sub(redis.sha1hex(v), 1, ` + strconv.Itoa(HolderLen) + `), redis.call('PTTL', KEYS[1]), c}
`)

// Inspect reads the state of key on every node at once, each call bounded
// by the node timeout and by ctx: whether the node holds the key, a
// fingerprint of its holder, its remaining TTL and its fencing counter. It
// is meant for operators and tests, and takes no lock: a lock may change
// hands while it reads, so nodes may disagree for a moment. Agreement says
// whether a majority agrees on one holder.
//
// The failure of a node is in its NodeState; Inspect itself fails only on
// a bad argument or a closed Backend. The key is the backend key, namespace
// included.
func (b *Backend) Inspect(ctx context.Context, key string) ([]NodeState, error) {
	switch {
	case ctx == nil:
		return nil, lock.Invalid("ctx", "nil", "must not be nil")
	case key == "":
		return nil, lock.Invalid("key", `""`, "must not be empty")
	case strings.IndexByte(key, 0) >= 0:
		return nil, lock.Invalid("key", strconv.Quote(key), "must not contain a NUL byte, which names internal keys")
	case b.closed.Load():
		return nil, lock.ErrClosed
	}
	keys := []string{key, fenceKey(key)}
	states := make([]NodeState, len(b.nodes))
	var wg sync.WaitGroup
	for i, n := range b.nodes {
		wg.Go(func() { // returns within the node timeout
			nctx, cancel := context.WithTimeout(ctx, b.timeout)
			defer cancel()
			states[i] = parseInspect(inspectScript.Exec(nctx, n.client, keys, nil))
			states[i].Node, states[i].Addr = i, n.addr
		})
	}
	wg.Wait()
	return states, nil
}

// parseInspect reads the reply of inspectScript.
func parseInspect(res rueidis.RedisResult) NodeState {
	vals, err := res.ToArray()
	if err != nil {
		return NodeState{Err: err}
	}
	if len(vals) != 4 {
		return NodeState{Err: fmt.Errorf("inspect script answered %d values, want 4", len(vals))}
	}
	held, err1 := vals[0].AsInt64()
	holder, err2 := vals[1].ToString()
	pttl, err3 := vals[2].AsInt64()
	counter, err4 := vals[3].ToString()
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return NodeState{Err: err}
	}
	fence, err := strconv.ParseUint(counter, 10, 64)
	if err != nil {
		return NodeState{Err: fmt.Errorf("fencing counter %q: %w", counter, err)}
	}
	s := NodeState{Held: held == 1, Holder: holder, Fence: fence}
	switch {
	case !s.Held:
	case pttl < 0:
		// PTTL answers -1 for a key without expiry. (-2, no key, cannot
		// happen: the script read the key a moment before.)
		s.TTL = -1
	default:
		s.TTL = time.Duration(pttl) * time.Millisecond
	}
	return s
}

// Agreement returns the holder that the most nodes in states share, and
// how many nodes share it. It returns "" and 0 when no node holds the key.
// The key is held when count is at least the Backend's Quorum: two holders
// cannot both reach it, so which one a tie returns does not matter.
func Agreement(states []NodeState) (holder string, count int) {
	counts := make(map[string]int, len(states))
	for _, s := range states {
		if s.Err != nil || !s.Held {
			continue
		}
		counts[s.Holder]++
		if n := counts[s.Holder]; n > count {
			holder, count = s.Holder, n
		}
	}
	return holder, count
}
