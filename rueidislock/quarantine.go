package rueidislock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// A node restarted without persistence has forgotten its lock keys and its
// fencing counters. With its keys gone it would grant a lock that another
// holder still has on the other nodes of its majority, and with its
// counters gone it could let a token go back. WithQuarantine protects
// against both, on the nodes themselves:
//
//   - Each node keeps a birth mark, set by the first script that finds it
//     missing: on a new node, or on one that lost its data. A node votes
//     for no lock until its birth is older than the quarantine, by its own
//     clock, so every lease it forgot has expired by then.
//   - Meanwhile a client that meets the quarantined node repairs it: it
//     reads the fencing counters of a majority of the other, healthy
//     nodes and raises the node's counters to the largest it read. Any
//     lease's token is held by a majority; that majority and the majority
//     read share a healthy node, so the repaired node ends up knowing every
//     token issued. Only then is the node marked repaired, and it votes
//     again once its quarantine is over.
//
// When every node answers and none is healthy (a new deployment, or all of
// them lost their data at once), there is nothing to repair from: the
// nodes are marked repaired as they are. Exclusion still holds after the
// quarantine; fencing holds only if the tokens of the clients' clocks move
// forward, which is the price of losing every copy.
const (
	birthKey    = "leaselock\x00birth"
	repairedKey = "leaselock\x00repaired"
	// fenceMatch finds every fencing counter in a SCAN.
	fenceMatch = "*" + fenceMark + "*"
)

// quarantineAcquireScript is acquireScript behind a node's quarantine:
// KEYS[5] and KEYS[6] are the birth mark and the repair mark, ARGV[7] the
// quarantine in milliseconds. A quarantined node answers {-1, counter, 0,
// 0} and sets nothing but its birth mark.
var quarantineAcquireScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local birth = redis.call('GET', KEYS[5])
if not birth then
	birth = tostring(now)
	redis.call('SET', KEYS[5], birth)
end
if now - tonumber(birth) < tonumber(ARGV[7]) or redis.call('GET', KEYS[6]) ~= birth then
	return {-1, redis.call('GET', KEYS[2]) or '0', 0, 0}
end
` + acquireLua)

// nodeStatusScript answers {repaired, birth}: repaired is 1 when the
// node's counters were repaired for its birth (or it had nothing to be
// repaired from). It sets a missing birth mark, as an attempt would.
var nodeStatusScript = rueidis.NewLuaScript(`
local birth = redis.call('GET', KEYS[1])
if not birth then
	local t = redis.call('TIME')
	birth = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
	redis.call('SET', KEYS[1], birth)
end
if redis.call('GET', KEYS[2]) == birth then
	return {1, birth}
end
return {0, birth}
`)

// raiseScript raises the counter KEYS[1] to ARGV[1] if it is lower.
var raiseScript = rueidis.NewLuaScript(`
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
	redis.call('SET', KEYS[1], ARGV[1])
end
return 1
`)

// markRepairedScript marks the node repaired for the birth ARGV[1], unless
// it was born again meanwhile.
var markRepairedScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
	return 0
end
redis.call('SET', KEYS[2], ARGV[1])
return 1
`)

// WithQuarantine keeps a node that lost its data (restarted without
// persistence) from voting for d, measured by the node's clock, and until
// its fencing counters are repaired from the other nodes (see the package
// documentation). d must be at least the longest TTL any client uses, and
// every client of the nodes must use the same d; Acquire refuses a TTL
// above it. A new deployment waits d once. It needs standalone (or
// Sentinel) nodes, each one rueidis client, and an ACL that lets the user
// read and write the keys "leaselock\x00birth" and "leaselock\x00repaired"
// (~leaselock*). Default: off, for nodes that keep their data (appendonly
// with appendfsync always).
func WithQuarantine(d time.Duration) Option {
	return func(c *config) { c.quarantine = d }
}

// quarantined is the state of the repairs of one Backend.
type quarantined struct {
	after     time.Duration // the quarantine; zero when off
	repairing []atomic.Bool // per node: a repair runs
	noRepair  bool          // a negative control (tests): mark nodes repaired without repairing
}

// repair starts restoring node i's fencing counters from the other nodes,
// unless a repair of i runs already. It runs on the Backend's context, and
// Close waits for it.
func (b *Backend) repair(i int) {
	if !b.quarantine.repairing[i].CompareAndSwap(false, true) {
		return
	}
	if !b.enter(1) {
		return
	}
	go func() {
		defer b.calls.Done()
		// A failed repair is tried again by the next attempt that finds
		// the node quarantined.
		_ = b.repairNode(b.ctx, i)
		b.quarantine.repairing[i].Store(false)
	}()
}

// errTooFewRepaired is repairNode's error when fewer than a majority of
// the other nodes can be read from: the repair waits for them.
var errTooFewRepaired = errors.New("rueidislock: too few repaired nodes to repair from")

// repairNode raises the fencing counters of node i to the largest that a
// majority of repaired nodes hold, then marks it repaired for its birth.
//
// A repaired node is a good source even while its quarantine lasts: any
// token issued meanwhile is on a majority of nodes that could vote, and
// that majority meets the majority read.
func (b *Backend) repairNode(ctx context.Context, i int) error {
	marks := []string{birthKey, repairedKey}
	births := make([]string, len(b.nodes))
	var sources []int // repaired nodes other than i
	answered := 0
	for j, n := range b.nodes {
		sctx, cancel := context.WithTimeout(ctx, b.timeout*releaseTimeouts)
		vals, err := nodeStatusScript.Exec(sctx, n.client, marks, nil).ToArray()
		cancel()
		if err != nil || len(vals) != 2 {
			continue
		}
		answered++
		repaired, _ := vals[0].AsInt64()
		births[j], _ = vals[1].ToString()
		if j != i && repaired == 1 {
			sources = append(sources, j)
		}
	}
	switch {
	case births[i] == "":
		return fmt.Errorf("rueidislock: node %d did not answer", i)
	case len(sources) >= b.quorum:
		if !b.quarantine.noRepair {
			counters, err := b.readCounters(ctx, sources[:b.quorum])
			if err != nil {
				return err
			}
			if err := b.raiseCounters(ctx, i, counters); err != nil {
				return err
			}
		}
		return markRepairedScript.Exec(ctx, b.nodes[i].client, marks, []string{births[i]}).Error()
	case len(sources) == 0 && answered == len(b.nodes):
		// No node has counters to trust: a new deployment, or every node
		// lost its data. Mark them all, as they are.
		var errs []error
		for j, n := range b.nodes {
			errs = append(errs, markRepairedScript.Exec(ctx, n.client, marks, []string{births[j]}).Error())
		}
		return errors.Join(errs...)
	}
	return errTooFewRepaired
}

// readCounters returns, for every fencing counter on the nodes, the
// largest value they hold.
func (b *Backend) readCounters(ctx context.Context, nodes []int) (map[string]uint64, error) {
	counters := make(map[string]uint64)
	for _, j := range nodes {
		c := b.nodes[j].client
		var cursor uint64
		for {
			e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(fenceMatch).Count(1000).Build()).AsScanEntry()
			if err != nil {
				return nil, fmt.Errorf("rueidislock: repair: scan node %d: %w", j, err)
			}
			if len(e.Elements) > 0 {
				cmds := make(rueidis.Commands, len(e.Elements))
				for k, name := range e.Elements {
					cmds[k] = c.B().Get().Key(name).Build()
				}
				for k, res := range c.DoMulti(ctx, cmds...) {
					v, err := res.AsUint64()
					if err != nil && !rueidis.IsRedisNil(err) {
						return nil, fmt.Errorf("rueidislock: repair: read node %d: %w", j, err)
					}
					counters[e.Elements[k]] = max(counters[e.Elements[k]], v)
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return counters, nil
}

// raiseCounters raises node i's counters to counters, in batches.
func (b *Backend) raiseCounters(ctx context.Context, i int, counters map[string]uint64) error {
	const batch = 500
	execs := make([]rueidis.LuaExec, 0, batch)
	flush := func() error {
		for _, res := range raiseScript.ExecMulti(ctx, b.nodes[i].client, execs...) {
			if err := res.Error(); err != nil {
				return fmt.Errorf("rueidislock: repair: raise counters on node %d: %w", i, err)
			}
		}
		execs = execs[:0]
		return nil
	}
	for name, v := range counters {
		execs = append(execs, rueidis.LuaExec{Keys: []string{name}, Args: []string{strconv.FormatUint(v, 10)}})
		if len(execs) == batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if len(execs) > 0 {
		return flush()
	}
	return nil
}
