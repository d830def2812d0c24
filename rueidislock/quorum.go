package rueidislock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
)

// attempt is the state an Acquire shares with its node calls that are
// still on their way. Once the attempt failed or its lease is released, it
// is over: a node call that ends after that undoes what its node may have
// granted, and one that ended before is counted in granted or unsure, for
// the undo to cover.
type attempt struct {
	start  time.Time // when the attempt was sent, for Wait
	keys   []string  // on a single node: singleNodeKeys, for the release
	queued bool      // whether a refusal put the waiter in the key's queue
	waiter string    // for a hand-over's grant: the registration it came from

	// registered is the registration for a hand-over that a refusal made,
	// or nil.
	registered *registration

	mu    sync.Mutex
	over  bool
	state []nodeState  // per node, as answered before the attempt was over
	buf   [7]nodeState // state's room, for up to 7 nodes

	// The release of the attempt's lease, over several nodes (nil if the
	// attempt was not released): what it answered on each node, and, for
	// a late grant that waits for a node's answer, a channel closed when
	// it comes (see mustUndo).
	released []releaseAnswer
	heard    []chan struct{}
}

// releaseAnswer is what the release of an attempt's lease answered on one
// node.
type releaseAnswer uint8

const (
	notAnswered releaseAnswer = iota
	kept                      // the key was not the lease's there, or the call failed
	freed                     // the release deleted the key there
)

// nodeState is what an attempt knows of its key on one node.
type nodeState uint8

const (
	notSet  nodeState = iota // refused, or not answered yet
	granted                  // the node holds the key for the attempt
	unsure                   // the call failed: the node may hold it
)

// settle records node i's answer r, and reports whether the attempt was
// over already, in which case the caller must undo what the node may have
// granted.
func (a *attempt) settle(i int, r reply) (late bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.over {
		switch {
		case r.err != nil:
			a.state[i] = unsure
		case r.ok:
			a.state[i] = granted
		}
	}
	return a.over
}

// end marks the attempt over. It returns the nodes an undo must cover, and
// how many of them are known to hold the key.
func (a *attempt) end() (nodes []int, held int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.over = true
	for i, s := range a.state {
		if s != notSet {
			nodes = append(nodes, i)
		}
		if s == granted {
			held++
		}
	}
	return nodes, held
}

// beginRelease marks the attempt over, by the release of its lease to
// nodes nodes, and returns how many nodes are known to hold the key.
func (a *attempt) beginRelease(nodes int) (held int) {
	a.mu.Lock()
	if nodes > 1 && a.released == nil {
		a.released = make([]releaseAnswer, nodes)
	}
	a.mu.Unlock()
	_, held = a.end()
	return held
}

// releasedOn records the release's answer from node i: whether it deleted
// the key there.
func (a *attempt) releasedOn(i int, deleted bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.released == nil {
		return
	}
	switch {
	case deleted:
		a.released[i] = freed
	case a.released[i] == notAnswered:
		a.released[i] = kept
	}
	if a.heard != nil && a.heard[i] != nil {
		close(a.heard[i])
		a.heard[i] = nil
	}
}

// mustUndo reports whether node i, which answered the attempt after it was
// over, must have its grant undone: it need not if the attempt's lease was
// released and the release deleted the key on node i, which it can have
// done only after the grant, since the script runs once (an EVALSHA
// refused with NOSCRIPT did nothing, and the EVAL after it is the run).
// Over several nodes a release often reaches the last node before that
// node's grant is heard, as the lease is granted by the others first. It
// waits for the release's answer from node i, which follows soon after
// the grant on a healthy node, until ctx, the node call's, ends (within the
// node timeout of the attempt's start, a bound that needs no timer of its
// own): without it the grant is undone, which is never wrong, only
// sometimes needless.
func (a *attempt) mustUndo(ctx context.Context, i int) bool {
	a.mu.Lock()
	if a.released == nil {
		a.mu.Unlock()
		return true
	}
	if a.released[i] == notAnswered {
		if a.heard == nil {
			a.heard = make([]chan struct{}, len(a.released))
		}
		heard := make(chan struct{})
		a.heard[i] = heard
		a.mu.Unlock()
		select {
		case <-heard:
		case <-ctx.Done():
		}
		a.mu.Lock()
	}
	defer a.mu.Unlock()
	return a.released[i] != freed
}

// singleNodeKeysOf returns singleNodeKeys(key): the ones att made, if att
// is an attempt on a single node, or new ones (for a hand-over's grant,
// or with no attempt at hand).
func singleNodeKeysOf(att *attempt, key string) []string {
	if att != nil && att.keys != nil {
		return att.keys
	}
	return singleNodeKeys(key)
}

// reply is one node's answer to a script.
type reply struct {
	node    int
	ok      bool   // granted, fenced, extended or released
	counter uint64 // acquire: the fencing counter after the script
	stored  bool   // acquire: the proposal was written
	pttl    time.Duration
	err     error
	// acquire: the node is in quarantine (see WithQuarantine)
	quarantined bool
	holder      string // acquire: a digest of the other holder's value
}

// replySet is where the replies of a fanOut arrive.
type replySet struct {
	ch  chan reply // nil when the one node was called inline
	one reply
}

// next returns the next reply to arrive.
func (r *replySet) next() reply {
	if r.ch == nil {
		return r.one
	}
	return <-r.ch
}

// fanOut runs call on the nodes listed, each in a goroutine of its own,
// within timeout, and within until if that is set, and returns where their
// replies arrive. The channel has room for every reply, so a node that answers
// after the caller decided never blocks: its goroutine ends when call
// returns, within timeout and the undo that may follow (see acquire).
//
// The caller holds a place in b.calls (see enter), so that the clients are
// open until it returns, even if Close began: that lets an Acquire that
// Close interrupted give back its grant, or undo a failed attempt, rather
// than leave keys until their TTL. The calls take places of their own, as
// they may outlive the caller, and Close waits for them too.
func (b *Backend) fanOut(ctx context.Context, timeout time.Duration, until time.Time, nodes []int, call func(ctx context.Context, i int, n node) reply) replySet {
	end := time.Now().Add(timeout)
	if !until.IsZero() && until.Before(end) {
		end = until
	}
	if len(nodes) == 1 {
		// The decision waits for this node anyway: spare the goroutine,
		// whose hand-offs cost more than the call on one node.
		nctx, cancel := context.WithDeadline(ctx, end)
		defer cancel()
		i := nodes[0]
		return replySet{one: b.report(ctx, i, call(nctx, i, b.nodes[i]))}
	}
	f := &fan{b: b, ctx: ctx, call: call, ch: make(chan reply, len(nodes))}
	// The caller's place keeps b.calls above zero: adding to it is safe
	// while Close waits on it.
	b.calls.Add(len(nodes))
	// One context bounds every call, rather than one each: they share
	// the deadline, and a timer per node costs more than the calls' other
	// bookkeeping. The last call to return cancels it.
	f.nctx, f.cancel = context.WithDeadline(ctx, end)
	f.running.Store(int32(len(nodes)))
	for _, i := range nodes {
		go f.run(i) // returns when call does
	}
	return replySet{ch: f.ch}
}

// fan is the calls of one fanOut over several nodes: one allocation for
// what they share, rather than a closure each.
type fan struct {
	b       *Backend
	ctx     context.Context // the caller's, for the Observer
	nctx    context.Context // bounds the calls
	cancel  context.CancelFunc
	running atomic.Int32 // calls not returned yet
	call    func(ctx context.Context, i int, n node) reply
	ch      chan reply
}

// run makes the call on node i and sends its reply.
func (f *fan) run(i int) {
	defer f.b.calls.Done()
	r := f.call(f.nctx, i, f.b.nodes[i])
	if f.running.Add(-1) == 0 {
		f.cancel()
	}
	f.ch <- f.b.report(f.ctx, i, r)
}

// report marks r as node i's, and tells the Mutex's Observer, if any, of
// its error, which it wraps in a NodeError.
func (b *Backend) report(ctx context.Context, i int, r reply) reply {
	r.node = i
	if r.err != nil {
		lock.ReportNodeError(ctx, i, b.nodes[i].addr, r.err)
		r.err = &NodeError{Node: i, Addr: b.nodes[i].addr, Err: r.err}
	}
	return r
}

// all lists every node. Callers must not change it.
func (b *Backend) all() []int { return b.allNodes }

// check refuses what no attempt can serve: a key that could alias an
// internal name, and a TTL that leaves no time for two node calls.
func (b *Backend) check(req *lock.Request) error {
	if b.closed.Load() {
		return lock.ErrClosed
	}
	if strings.IndexByte(req.Key, 0) >= 0 {
		return lock.Invalid("key", strconv.Quote(req.Key), "must not contain a NUL byte, which names internal keys")
	}
	if req.TTL-req.Drift-2*b.timeout <= 0 {
		return lock.Invalid("WithTTL", req.TTL, fmt.Sprintf("must exceed the drift (%v) plus two node timeouts (%v)", req.Drift, 2*b.timeout))
	}
	if q := b.quarantine.after; q > 0 && req.TTL > q {
		return lock.Invalid("WithTTL", req.TTL, fmt.Sprintf("must not exceed the nodes' quarantine (%v): a node that lost its data could vote while a lease it forgot lives", q))
	}
	return nil
}

// Acquire makes one attempt on every node at once and decides as soon as a
// majority has granted or enough nodes have refused: see the package
// documentation for the algorithm and its fencing tokens.
func (b *Backend) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	if !b.enter(1) {
		return lock.Result{}, lock.ErrClosed
	}
	defer b.calls.Done()
	waiter := b.waiterID(&req)
	res, err := b.acquire(ctx, req, waiter)
	// A refusal queued the waiter (and so may a call whose reply was lost);
	// a grant took it out.
	if waiter != "" {
		b.notes.setQueued(waiter, req.Key, !res.Acquired)
	}
	if res.Acquired && b.closed.Load() {
		// Close began during the attempt, and waits for it: give the key
		// back while the clients are open, as no Release can after Close.
		req.Owner, req.Token, req.Handle = res.Owner, res.Token, res.Handle
		_ = b.release(ctx, req)
		return lock.Result{}, lock.ErrClosed
	}
	return res, err
}

// acquire is Acquire, once Close is sure to wait for it, for the waiter
// named waiter (see waiterID).
func (b *Backend) acquire(ctx context.Context, req lock.Request, waiter string) (lock.Result, error) {
	if err := b.check(&req); err != nil {
		return lock.Result{}, err
	}
	// A new value for every attempt, never the previous attempt's: a node
	// that answers an attempt late deletes what it granted (see below), and
	// must not delete what a later attempt of the same Acquire holds there.
	// A failed attempt's keys go by its own undo, so a retry never waits
	// behind them.
	owner, err := b.lockValue()
	if err != nil {
		return lock.Result{}, err
	}
	// Validity is measured on the Backend's clock (see clock.go); start is
	// the same instant on package time, for Wait and the lock package.
	sent := b.clock.now()
	start := b.clock.system(sent)
	deadline := sent.Add(req.TTL - req.Drift)
	proposal := b.proposal()
	proposed, _ := strconv.ParseUint(proposal, 10, 64)
	script := acquireScript
	att := &attempt{start: start}
	var keys []string
	if len(b.nodes) == 1 {
		// Made once for the attempt and its release: the queue and the
		// registrations are unused unless a waiter is named.
		keys = singleNodeKeys(req.Key)
		att.keys = keys
	} else {
		keys = []string{req.Key, fenceKey(req.Key)}
	}
	args := []string{owner, strconv.FormatInt(req.TTL.Milliseconds(), 10), proposal, waiter, "", ""}
	if waiter != "" && req.Owner != "" {
		// Not the Acquire's first attempt: an earlier one may have
		// queued and registered the waiter, which a grant undoes.
		args[5] = "1"
	}
	registers := waiter != "" && req.Wait > 0 && b.handsOver()
	if registers {
		// A refusal registers the waiter for a hand-over (see handover.go)
		// with this attempt's value, for the wait that follows.
		args[4] = strconv.FormatInt(b.registrationLife(&req, req.Wait).Milliseconds(), 10)
	}
	if q := b.quarantine.after; q > 0 {
		script = quarantineAcquireScript
		if len(keys) == 2 {
			keys = append(keys, queueKey(req.Key), registrationsKey(req.Key)) // unused, in their place
		}
		// A copy: the release uses att.keys as they are.
		keys = append(keys[:4:4], birthKey, repairedKey)
		args = append(args, strconv.FormatInt(q.Milliseconds(), 10))
	}
	att.state = att.buf[:0]
	if len(b.nodes) > len(att.buf) {
		att.state = make([]nodeState, 0, len(b.nodes))
	}
	att.state = att.state[:len(b.nodes)]
	// The node calls do not stop when ctx ends: a call cut short may still
	// reach its node (rueidis has queued it, perhaps on another connection
	// than the undo), and only a call that sees its grant can undo it. They
	// are bounded by the node timeout and the deadline instead.
	replies := b.fanOut(context.WithoutCancel(ctx), b.timeout, b.clock.system(deadline), b.all(), func(nctx context.Context, i int, n node) reply {
		r := parseAcquire(script.Exec(nctx, n.client, keys, args), proposed)
		if att.settle(i, r) && (r.ok || r.err != nil) && !b.knobs.noUndo && att.mustUndo(nctx, i) {
			// This node granted, or may have, after the attempt was given
			// up or its lease released (a NOSCRIPT fallback can land after
			// the release, a timed-out call when a frozen node thaws):
			// free it here, or it would stay until its TTL. After a reply
			// the undo follows the grant; after a timeout the call may
			// still wait on another of the node's connections, and a grant
			// landing after the undo stays until its TTL.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout*releaseTimeouts)
			script, ukeys, uargs := b.undo(req.Key, owner, att)
			script.Exec(uctx, n.client, ukeys, uargs)
			cancel()
		}
		return r
	})

	var (
		granted         []int
		stored, refused int
		highest         uint64 // the largest counter any node reported
		holderTTL       time.Duration
		holders         []holderVotes // the other holders, and their nodes
		errs            []error
	)
	for range b.nodes {
		r := replies.next()
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case r.ok:
			granted = append(granted, r.node)
			if r.stored {
				stored++
			}
		case r.quarantined:
			refused++
			b.repair(r.node)
		default:
			refused++
			holderTTL = max(holderTTL, r.pttl)
			holders = countVote(holders, r.holder)
		}
		highest = max(highest, r.counter)
		if len(granted) >= b.quorum || len(b.nodes)-refused-len(errs) < b.quorum {
			break
		}
	}
	// A refusal for a holder queued the waiter; a grant, even one undone
	// below, took it out of the queue.
	att.queued = waiter != "" && len(holders) > 0
	// The lock package counts the lease's deadline from Start, on package
	// time: give it the start that puts it where this clock's deadline is.
	result := lock.Result{Owner: owner, Start: b.clock.system(deadline).Add(req.Drift - req.TTL), Handle: att}
	if att.queued && registers {
		att.registered = &registration{waiter: waiter, value: owner, start: result.Start}
	}
	if len(granted) >= b.quorum && b.clock.now().Before(deadline) {
		token := proposed
		if stored < b.quorum && !b.knobs.ignoreStored {
			// Fewer than a majority stored the proposal: some node knew a
			// counter at least as large. Raise a majority past it.
			token = highest + 1
			if hook := b.knobs.afterRoundOne; hook != nil {
				hook()
			}
			if err := b.fence(ctx, deadline, granted, keys, owner, token); err != nil {
				errs = append(errs, err)
				token = 0
			}
		}
		if token != 0 && b.clock.now().Before(deadline) {
			result.Acquired, result.Token = true, token
			return result, nil
		}
	}
	// No lease: undo what this attempt set. A node that refused set
	// nothing, and one that has not answered yet undoes its own grant when
	// it comes (see above): what is left is the nodes that granted, and
	// those whose answer was lost.
	// It returns once the nodes known to hold the key have answered: the
	// undo of those that failed runs on, within the node timeout, since a
	// node that failed once is likely to fail again, slowly.
	if undo, held := att.end(); len(undo) > 0 && !b.knobs.noUndo {
		b.releaseOn(ctx, undo, held, held, req.Key, owner, "", nil, false)
	}
	if len(errs) > 0 && refused < len(b.nodes)-b.quorum+1 {
		if denied(errs) {
			// Every node that answered with an error denied the user: no
			// retry will cure that, and lock.ErrInvalid stops the Mutex.
			errs = append([]error{lock.Invalid("credentials", "(not shown)", "denied by the nodes")}, errs...)
		}
		return result, errors.Join(errs...)
	}
	result.HolderTTL = holderTTL
	if len(holders) > 0 && mostVotes(holders) < b.quorum {
		// Other holders were seen, none on a majority: the votes were
		// split between contenders, and perhaps nobody won. Then no
		// release will come to wake the waiters, who would sleep their
		// whole delay. Tell them to try again soon, each after its own
		// short time, so that they fall out of step (Redlock's random
		// retry). A holder seen on fewer nodes than it has costs one
		// early attempt.
		result.HolderTTL = splitRetry(owner)
	}
	return result, nil
}

// proposal returns the fencing token to propose: the wall clock in
// microseconds, which grows across holders even on nodes that lost their
// counters (see the package documentation).
func (b *Backend) proposal() string {
	proposed := b.clock.wall()
	if b.proposalClock != nil {
		proposed = b.proposalClock()
	}
	return strconv.FormatInt(proposed.UnixMicro(), 10)
}

// holderVotes is how many nodes one other holder was seen on.
type holderVotes struct {
	holder string
	nodes  int
}

// countVote counts one more node for holder.
func countVote(votes []holderVotes, holder string) []holderVotes {
	for i := range votes {
		if votes[i].holder == holder {
			votes[i].nodes++
			return votes
		}
	}
	return append(votes, holderVotes{holder: holder, nodes: 1})
}

// mostVotes returns the most nodes any one holder was seen on.
func mostVotes(votes []holderVotes) int {
	most := 0
	for _, v := range votes {
		most = max(most, v.nodes)
	}
	return most
}

// splitRetry returns how long to wait after a split vote: between 1 and
// 5 ms, drawn from the attempt's random value, which is spent.
func splitRetry(owner string) time.Duration {
	n, _ := strconv.ParseUint(owner[:4], 16, 16)
	return time.Millisecond + time.Duration(n%4000)*time.Microsecond
}

// denied reports whether every error is a node refusing the user: a wrong
// password, no authentication, or no permission for the key or command.
func denied(errs []error) bool {
	for _, err := range errs {
		rerr, ok := rueidis.IsRedisErr(err)
		if !ok {
			return false
		}
		switch strings.SplitN(rerr.Error(), " ", 2)[0] {
		case "WRONGPASS", "NOAUTH", "NOPERM":
		default:
			return false
		}
	}
	return true
}

// fence runs the second round of fencing on the granting nodes: it needs a
// majority of acknowledgements before the deadline.
func (b *Backend) fence(ctx context.Context, deadline time.Time, granted []int, keys []string, owner string, token uint64) error {
	args := []string{owner, strconv.FormatUint(token, 10)}
	replies := b.fanOut(ctx, b.timeout, b.clock.system(deadline), granted, func(ctx context.Context, _ int, n node) reply {
		v, err := b.fenceLua().Exec(ctx, n.client, keys, args).AsInt64()
		return reply{ok: v == 1, err: err}
	})
	acks := 0
	var errs []error
	for range granted {
		r := replies.next()
		if r.ok {
			acks++
		} else if r.err != nil {
			errs = append(errs, r.err)
		}
		if acks >= b.quorum {
			return nil
		}
	}
	return fmt.Errorf("rueidislock: fencing token stored on %d nodes, %d needed: %w", acks, b.quorum, errors.Join(errs...))
}

// parseAcquire reads the reply of acquireScript to an attempt that
// proposed the token proposed.
func parseAcquire(res rueidis.RedisResult, proposed uint64) reply {
	if n, err := res.AsInt64(); err == nil && n == 1 {
		return reply{ok: true, counter: proposed, stored: true}
	}
	vals, err := res.ToArray()
	if err != nil {
		return reply{err: err}
	}
	if len(vals) != 4 && len(vals) != 5 {
		return reply{err: fmt.Errorf("acquire script answered %d values, want 1, or 4 or 5", len(vals))}
	}
	var holder string
	if len(vals) == 5 {
		holder, _ = vals[4].ToString()
	}
	granted, err1 := vals[0].AsInt64()
	counter, err2 := vals[1].ToString()
	stored, err3 := vals[2].AsInt64()
	pttl, err4 := vals[3].AsInt64()
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return reply{err: err}
	}
	c, err := strconv.ParseUint(counter, 10, 64)
	if err != nil {
		return reply{err: fmt.Errorf("fencing counter %q: %w", counter, err)}
	}
	if holder != "" && pttl == 0 {
		// The holder has under 1 ms left: wait that, not a whole delay.
		pttl = 1
	}
	return reply{ok: granted == 1, quarantined: granted == -1, counter: c, stored: stored == 1, pttl: time.Duration(max(pttl, 0)) * time.Millisecond, holder: holder}
}

// Extend sets the TTL of the key on every node that still holds it for the
// owner, and succeeds if a majority did before ctx's deadline. It reports
// lock.ErrNotHeld when too many nodes no longer hold it for a majority to be
// possible, and the nodes' errors when it could not tell.
func (b *Backend) Extend(ctx context.Context, req lock.Request) (lock.Result, error) {
	if !b.enter(1) {
		return lock.Result{}, lock.ErrClosed
	}
	defer b.calls.Done()
	if q := b.quarantine.after; q > 0 && req.TTL > q {
		return lock.Result{}, lock.Invalid("ttl", req.TTL, fmt.Sprintf("must not exceed the nodes' quarantine (%v)", q))
	}
	until, _ := ctx.Deadline()
	keys := []string{req.Key}
	args := []string{req.Owner, strconv.FormatInt(req.TTL.Milliseconds(), 10)}
	// Detached, as in Acquire: Extend returns once a majority answered, and
	// the calls to slower nodes must still extend the key there (a NOSCRIPT
	// fallback on a done context would never be sent).
	replies := b.fanOut(context.WithoutCancel(ctx), b.timeout, until, b.all(), func(ctx context.Context, _ int, n node) reply {
		v, err := extendScript.Exec(ctx, n.client, keys, args).AsInt64()
		return reply{ok: v == 1, err: err}
	})
	extended, lost := 0, 0
	var errs []error
	for range b.nodes {
		r := replies.next()
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case r.ok:
			extended++
		default:
			lost++
		}
		if extended >= b.quorum {
			return lock.Result{Acquired: true, Token: req.Token, Owner: req.Owner}, nil
		}
		if len(b.nodes)-lost < b.quorum {
			return lock.Result{}, fmt.Errorf("%w: key %q: gone from %d of %d nodes", lock.ErrNotHeld, req.Key, lost, len(b.nodes))
		}
	}
	return lock.Result{}, fmt.Errorf("rueidislock: key %q extended on %d nodes, %d needed: %w", req.Key, extended, b.quorum, errors.Join(errs...))
}

// Release deletes the key on every node where the owner holds it, and
// announces the release to waiters. It makes one call per node and never
// retries: a key that is gone stays gone. It returns once a majority has
// released the key, or every node has answered.
func (b *Backend) Release(ctx context.Context, req lock.Request) error {
	if !b.enter(1) {
		return lock.ErrClosed
	}
	defer b.calls.Done()
	return b.release(ctx, req)
}

// release is Release, once Close is sure to wait for it.
func (b *Backend) release(ctx context.Context, req lock.Request) error {
	want, waiter := b.quorum, ""
	att, _ := req.Handle.(*attempt)
	if att != nil {
		waiter = att.waiter
		// A node call of the Acquire still on its way (a NOSCRIPT fallback
		// sends the script again, a frozen node runs it when it thaws)
		// undoes its grant itself from now on, unless this release
		// deleted it.
		want = max(want, att.beginRelease(len(b.nodes)))
	}
	released, errs := b.releaseOn(ctx, b.all(), b.quorum, want, req.Key, req.Owner, waiter, att, true)
	switch {
	case released > 0:
		return nil
	case len(errs) > 0:
		return errors.Join(errs...)
	}
	return fmt.Errorf("%w: key %q", lock.ErrNotHeld, req.Key)
}

// releaseTimeouts is how many node timeouts a release or an undo waits for
// a node: more than an attempt, which can be made again, while a release
// that times out leaves the key until its TTL.
const releaseTimeouts = 4

// undo returns the script that takes back owner's grant of key, with its
// keys and arguments. Over several nodes it frees the key silently: a
// partial grant frees nothing another owner could use, and waking waiters
// would only make them spin. On a single node the grant held the whole
// key, and its undo wakes the next waiter as a release does.
// att, if not nil, is the attempt that made the grant, whose names of the
// key's internal keys serve again.
func (b *Backend) undo(key, owner string, att *attempt) (*rueidis.Lua, []string, []string) {
	if len(b.nodes) == 1 {
		return undoWakingScript, singleNodeKeysOf(att, key), []string{owner, releasedChannel(key), "", ""}
	}
	return undoScript, []string{key}, []string{owner}
}

// releaseOn deletes the owner's key on nodes, on a context that ctx's end
// cannot stop, each call within releaseTimeouts node timeouts. It returns
// once want nodes have deleted it, or need have and one node timeout has
// passed, or all have answered; the calls it does not wait for run on. It
// wakes waiters if notify is set: for a release, not for an undo. On a
// single node, waiter names the registration the lease came from, if it
// came from a hand-over, which the release forgets. att, if not nil, is
// the attempt whose lease is released: it learns on which nodes the
// release deleted the key (see mustUndo).
func (b *Backend) releaseOn(ctx context.Context, nodes []int, need, want int, key, owner, waiter string, att *attempt, notify bool) (released int, errs []error) {
	var (
		script     *rueidis.Lua
		keys, args []string
	)
	switch {
	case !notify:
		script, keys, args = b.undo(key, owner, att)
	case len(b.nodes) == 1:
		// The undo's keys and arguments, sent as EVALSHA.
		script, keys, args = b.undo(key, owner, att)
		script, args[3] = b.releaseLua(), waiter
	default:
		// The release's name tells its copies from the several nodes
		// apart.
		script, keys, args = b.releaseLua(), []string{key}, []string{owner, releasedChannel(key), b.releaseName()}
	}
	sent := time.Now()
	replies := b.fanOut(context.WithoutCancel(ctx), b.timeout*releaseTimeouts, time.Time{}, nodes, func(ctx context.Context, i int, n node) reply {
		v, err := script.Exec(ctx, n.client, keys, args).AsInt64()
		if att != nil {
			att.releasedOn(i, err == nil && v == 1)
		}
		return reply{ok: v == 1, err: err}
	})
	var late <-chan time.Time // once need released: the grace of the rest
	for range nodes {
		if released >= want || released >= need && replies.ch == nil {
			break
		}
		if released >= need {
			// Wait, for up to one node timeout from the start, for the
			// nodes that held the key and have not answered yet: on
			// healthy nodes Release then returns with the key gone from
			// all of them, while a slow node costs no more than an
			// attempt does.
			if late == nil {
				t := time.NewTimer(max(b.timeout-time.Since(sent), 0))
				defer t.Stop()
				late = t.C
			}
		}
		var r reply
		if late == nil {
			r = replies.next()
		} else {
			select {
			case r = <-replies.ch:
			case <-late:
				return released, errs
			}
		}
		if r.ok {
			released++
		} else if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	return released, errs
}
