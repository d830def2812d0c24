package redistest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Oracle O4 of RELIABILITY.md §6: what locks leave behind on the nodes. A
// lock key that no live lease holds must be on its way out, its PTTL no
// more than the TTL it was given and the key gone when that runs out; at
// teardown only the fencing counters (and the quarantine's marks) remain,
// at most one counter per lock name.
//
// The checker knows rueidislock's layout of internal names (rueidislock's
// keys.go and quarantine.go), which every internal name marks with a NUL
// byte that lock keys never contain:
//
//	key\x00fence                  counter of a key with a hash tag of its own
//	key\x00fence{tag}             counter of a key with no '{'
//	{tag}\x00fence:s\x00key       counter of any other key
//	key\x00queue...               the list of key's waiters, named as its
//	                              counter is; it expires as a lock key does
//	key\x00handover...            the hash of key's waiters registered for a
//	                              hand-over, named and expiring as the list
//	leaselock\x00birth            quarantine marks, one of each per node
//	leaselock\x00repaired
//
// TestResidueLayout in rueidislock's tests pins this layout against the
// real package.

// ResidueGrace is how long after the end of its TTL a lock key may still
// be seen (the "TTL + 50 ms" of O4): the time to ask the node, and the
// millisecond rounding of expiry.
const ResidueGrace = 50 * time.Millisecond

// The internal names of rueidislock that the residue checker recognises.
const (
	fenceMark = "\x00fence"
	fenceSlot = "\x00fence:s\x00"
	queueMark = "\x00queue"
	queueSlot = "\x00queue:s\x00"
	handMark  = "\x00handover"
	handSlot  = "\x00handover:s\x00"
	birthMark = "leaselock\x00birth"
	repairKey = "leaselock\x00repaired"
)

// Residue checks oracle O4 on the keys of one namespace, on every node.
// Its methods only read the nodes, through their admin connections; they
// must not be frozen or paused. At the end of a run:
//
//	m.Close() // every lease released or ended
//	r := redistest.Residue{Match: "s7:*", TTL: time.Second}
//	if err := r.Teardown(ctx, servers); err != nil {
//		t.Errorf("O4: %v", err)
//	}
//
// and while leases live, Check with the lock names they hold.
type Residue struct {
	// Match is the SCAN MATCH pattern of the namespace, such as "s7:*"; ""
	// scans every key. The counters of keys without '{' start with the key,
	// so a prefix pattern covers them; a counter of the third form (above)
	// starts with its tag and is only seen by a pattern that matches it.
	Match string
	// TTL is the largest TTL that a lease, or an Extend, gave a key of the
	// namespace. No lock key may have a longer PTTL.
	TTL time.Duration
}

// Check scans the namespace on every server once and reports every
// violation of O4 as one error: a lock key (or waiters' queue) without
// expiry or with a PTTL above r.TTL, one whose lock name is not held (not
// in held) and is still there ResidueGrace after its PTTL ran out, a
// counter that is not a number, two counters of one lock name on one
// node, or an internal name it does not know. The lock names in held
// belong to live leases: their keys and queues may stay.
//
// Check waits, at most r.TTL plus ResidueGrace, for the keys not held to
// go. Call it when nothing acquires those keys any more (after the load
// stopped, or for keys only the test uses), since a new holder would keep
// one. The error names each node by its index in servers.
func (r Residue) Check(ctx context.Context, servers []*Server, held map[string]bool) error {
	var errs []error
	var watch []residueKey
	for i, s := range servers {
		keys, err := r.scan(ctx, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %d (%s): %w", i, s.Addr(), err))
			continue
		}
		w, err := r.classify(ctx, i, s, keys, held)
		watch = append(watch, w...)
		errs = append(errs, err)
	}
	errs = append(errs, waitGone(ctx, servers, watch))
	return errors.Join(errs...)
}

// Teardown is the check at the end of a run, when no lease is live: Check
// with nothing held, then a second scan that finds no lock key at all,
// which also catches a key set again by a late command after Check saw it
// go. What remains is counters and marks only.
func (r Residue) Teardown(ctx context.Context, servers []*Server) error {
	if err := r.Check(ctx, servers, nil); err != nil {
		return err
	}
	var errs []error
	for i, s := range servers {
		keys, err := r.scan(ctx, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %d (%s): %w", i, s.Addr(), err))
			continue
		}
		for _, k := range keys {
			if kind, _ := classifyName(k); kind == lockKey || kind == queueKey {
				pttl, _ := ask(ctx, s, "PTTL", k).AsInt64()
				errs = append(errs, fmt.Errorf("node %d (%s): %s %q (PTTL %d ms) left at teardown: set after the first scan, by a late command (O4)", i, s.Addr(), kind, k, pttl))
			}
		}
	}
	return errors.Join(errs...)
}

// residueKey is a lock key (or queue) not held, which must be gone by
// due.
type residueKey struct {
	node int
	kind nameKind
	key  string
	due  time.Time
}

// classify checks the keys found on node i and returns the lock keys that
// nothing holds, to be watched until they go.
func (r Residue) classify(ctx context.Context, i int, s *Server, keys []string, held map[string]bool) ([]residueKey, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("node %d (%s): "+format, append([]any{i, s.Addr()}, args...)...))
	}
	counters := map[string][]string{} // lock name -> its counters' names
	var watch []residueKey
	for _, k := range keys {
		kind, name := classifyName(k)
		switch kind {
		case lockKey, queueKey:
			asked := time.Now() // the PTTL counts from a moment after this
			pttl, err := ask(ctx, s, "PTTL", k).AsInt64()
			switch {
			case err != nil:
				bad("PTTL %q: %v", k, err)
			case pttl == -2: // gone since the scan
			case pttl == -1:
				bad("%s %q has no expiry (O4)", kind, k)
			case time.Duration(pttl)*time.Millisecond > r.TTL:
				bad("%s %q has PTTL %d ms, above the TTL %v (O4)", kind, k, pttl, r.TTL)
			case !held[name]:
				due := asked.Add(time.Duration(pttl)*time.Millisecond + ResidueGrace)
				watch = append(watch, residueKey{node: i, kind: kind, key: k, due: due})
			}
		case counterKey:
			counters[name] = append(counters[name], k)
			v, err := ask(ctx, s, "GET", k).ToString()
			if err == nil {
				_, err = strconv.ParseUint(v, 10, 64)
			}
			if err != nil {
				bad("fencing counter %q is not a number: %v", k, err)
			}
		case markKey:
		default:
			bad("unknown internal key %q", k)
		}
	}
	for name, cs := range counters {
		if len(cs) > 1 {
			bad("lock name %q has %d fencing counters %q, want at most one (O4)", name, len(cs), cs)
		}
	}
	return watch, errors.Join(errs...)
}

// waitGone polls the servers until every key in watch is gone, and reports
// each that is still there after its due time. Servers cannot announce an
// expiry, hence the polling.
func waitGone(ctx context.Context, servers []*Server, watch []residueKey) error {
	var errs []error
	for len(watch) > 0 {
		left := watch[:0]
		for _, w := range watch {
			s := servers[w.node]
			asked := time.Now()
			n, err := ask(ctx, s, "EXISTS", w.key).AsInt64()
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("node %d (%s): EXISTS %q: %w", w.node, s.Addr(), w.key, err))
			case n == 0:
			case asked.After(w.due):
				pttl, _ := ask(ctx, s, "PTTL", w.key).AsInt64()
				errs = append(errs, fmt.Errorf("node %d (%s): %s %q held by no one is still there %v after its TTL ran out (PTTL now %d ms; O4)",
					w.node, s.Addr(), w.kind, w.key, asked.Sub(w.due)+ResidueGrace, pttl))
			default:
				left = append(left, w)
			}
		}
		watch = left
		if len(watch) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return errors.Join(append(errs, fmt.Errorf("residue: %d keys still to go: %w", len(watch), ctx.Err()))...)
		case <-time.After(2 * time.Millisecond):
		}
	}
	return errors.Join(errs...)
}

// ask runs a command on s's admin connection, bounded by ctx and by the
// admin timeout, so that a frozen node fails the check instead of hanging
// it.
func ask(ctx context.Context, s *Server, args ...string) rueidis.RedisResult {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	return s.DoContext(ctx, args...)
}

// scan returns the keys of the namespace on s.
func (r Residue) scan(ctx context.Context, s *Server) ([]string, error) {
	match := r.Match
	if match == "" {
		match = "*"
	}
	var keys []string
	cursor := "0"
	for {
		vals, err := ask(ctx, s, "SCAN", cursor, "MATCH", match, "COUNT", "1000").ToArray()
		if err != nil {
			return nil, fmt.Errorf("SCAN: %w", err)
		}
		if len(vals) != 2 {
			return nil, fmt.Errorf("SCAN answered %d values, want 2", len(vals))
		}
		if cursor, err = vals[0].ToString(); err != nil {
			return nil, fmt.Errorf("SCAN cursor: %w", err)
		}
		page, err := vals[1].AsStrSlice()
		if err != nil {
			return nil, fmt.Errorf("SCAN keys: %w", err)
		}
		keys = append(keys, page...)
		if cursor == "0" {
			return keys, nil
		}
	}
}

// nameKind is what a key of a lock namespace is.
type nameKind uint8

const (
	lockKey    nameKind = iota // a lock's own key: no NUL byte
	counterKey                 // a fencing counter
	queueKey                   // a list of a lock's waiters, or their registrations
	markKey                    // a quarantine mark
	unknownKey                 // an internal name of no known form
)

// classifyName tells what key is, and the lock name it belongs to (none
// for a mark).
func classifyName(key string) (nameKind, string) {
	if !strings.Contains(key, "\x00") {
		return lockKey, key
	}
	if key == birthMark || key == repairKey {
		return markKey, ""
	}
	if name, ok := internalName(key, fenceMark, fenceSlot); ok {
		return counterKey, name
	}
	if name, ok := internalName(key, queueMark, queueSlot); ok {
		return queueKey, name
	}
	if name, ok := internalName(key, handMark, handSlot); ok {
		return queueKey, name
	}
	return unknownKey, ""
}

// internalName returns the lock name of key if key is an internal name
// made with mark, or with slotMark for a name with a lone '{' (rueidislock's
// internalKey): "name"+mark, "name"+mark+"{tag}", or "{tag}"+slotMark+"name".
func internalName(key, mark, slotMark string) (string, bool) {
	if i := strings.Index(key, slotMark); i > 2 && key[0] == '{' && key[i-1] == '}' && isTag(key[1:i-1]) {
		return key[i+len(slotMark):], true
	}
	i := strings.Index(key, mark)
	if i <= 0 {
		return "", false
	}
	name, rest := key[:i], key[i+len(mark):]
	if rest == "" || (len(rest) > 2 && rest[0] == '{' && rest[len(rest)-1] == '}' && isTag(rest[1:len(rest)-1])) {
		return name, true
	}
	return "", false
}

// isTag reports whether s is a slot tag as rueidislock makes them: a
// decimal number.
func isTag(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (k nameKind) String() string {
	switch k {
	case lockKey:
		return "lock key"
	case counterKey:
		return "fencing counter"
	case queueKey:
		return "waiters' queue"
	case markKey:
		return "quarantine mark"
	}
	return "unknown internal key"
}
