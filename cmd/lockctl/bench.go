package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/leaselock/lock"
)

// benchKeyPrefix starts the name of every key bench locks.
const benchKeyPrefix = "lockctl:bench:"

// progressEvery is how often the progress line is redrawn, and how often
// bench checks that it is still making progress.
const progressEvery = 500 * time.Millisecond

// stopGrace is how long bench waits for its workers after it cancelled their
// contexts, before it gives up on them.
const stopGrace = 10 * time.Second

const benchHelp = `
Bench starts -workers goroutines that contend for -keys keys: each one
acquires a random key, reads its counter, waits -hold, writes the counter
plus one, and releases the key, for -duration or -ops acquisitions. It
reports acquisitions per second, the wait and hand-off latencies, and three
safety checks: one holder of a key at once, no lost update of a counter, and
fencing tokens that increase. The backend is memory unless -redis, -config
or LOCK_CONFIG names Redis nodes. Exit status: 0 if every check passed, 1 if
one failed or the run did, 2 for bad usage.`

// benchConfig is what the flags of bench set.
type benchConfig struct {
	backend     backendFlags
	workers     int
	keys        int
	duration    time.Duration
	durationSet bool // -duration was given: it bounds a run of -ops too
	ops         int64
	hold        time.Duration
	ttl         time.Duration
	renew       bool
	progress    bool
	json        bool

	// tick is how often the progress line is redrawn and progress checked.
	// Zero: progressEvery.
	tick time.Duration

	// stallAfter is how long bench lets pass without a completed
	// acquisition before it cancels its workers and fails. Zero: a default
	// from hold.
	stallAfter time.Duration
}

// benchCommand is "lockctl bench".
func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseBench(args, stderr)
	if err != nil {
		return err
	}
	res, err := runBench(ctx, cfg, stderr)
	if res == nil {
		return err
	}
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(res); werr != nil {
			return errors.Join(err, werr)
		}
	} else if werr := res.writeTable(stdout); werr != nil {
		return errors.Join(err, werr)
	}
	if err != nil {
		return err
	}
	if len(res.Failures) > 0 {
		return fmt.Errorf("safety check failed: %s", strings.Join(res.Failures, "; "))
	}
	return nil
}

// parseBench parses and checks the flags of bench. Its errors name the flag.
func parseBench(args []string, stderr io.Writer) (benchConfig, error) {
	var cfg benchConfig
	fs := newFlagSet("bench", "[flags]", benchHelp, stderr)
	cfg.backend.register(fs)
	fs.IntVar(&cfg.workers, "workers", 8, "number of goroutines that contend for the keys")
	fs.IntVar(&cfg.keys, "keys", 1, "number of keys; each acquisition picks one at random")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "how long to run, unless -ops is set; with -ops, the longest run")
	fs.Int64Var(&cfg.ops, "ops", 0, "total acquisitions to make, then stop (0: run for -duration)")
	fs.DurationVar(&cfg.hold, "hold", 0, "how long each holder keeps its key, between reading and writing the key's counter")
	fs.DurationVar(&cfg.ttl, "ttl", lock.DefaultTTL, "lease TTL (lock.WithTTL)")
	fs.BoolVar(&cfg.renew, "renew", lock.DefaultAutoExtend, "leases renew themselves until released (lock.WithAutoExtend)")
	fs.BoolVar(&cfg.progress, "progress", false, "show a progress line on stderr (default: when stderr is a terminal)")
	fs.BoolVar(&cfg.json, "json", false, "print the results as JSON")
	if err := parseFlags(fs, args); err != nil {
		return cfg, err
	}
	progressSet := false
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "duration":
			cfg.durationSet = true
		case "progress":
			progressSet = true
		}
	})
	if !progressSet {
		cfg.progress = isTerminal(stderr)
	}

	switch {
	case cfg.workers < 1:
		return cfg, usageErrorf("invalid -workers %d: must be at least 1", cfg.workers)
	case cfg.keys < 1:
		return cfg, usageErrorf("invalid -keys %d: must be at least 1", cfg.keys)
	case cfg.ops < 0:
		return cfg, usageErrorf("invalid -ops %d: must not be negative", cfg.ops)
	case cfg.duration <= 0 && (cfg.ops == 0 || cfg.durationSet):
		return cfg, usageErrorf("invalid -duration %v: must be positive", cfg.duration)
	case cfg.hold < 0:
		return cfg, usageErrorf("invalid -hold %v: must not be negative", cfg.hold)
	case cfg.ttl <= 0:
		return cfg, usageErrorf("invalid -ttl %v: must be positive", cfg.ttl)
	}
	// The library checks the rest of -ttl when bench opens the backend.
	return cfg, cfg.backend.resolve()
}

// isTerminal reports whether w is a terminal, so that a progress line
// redrawn with \r does not fill logs.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// optionFlags maps the options that lock's errors name to the flags that set
// them, so that an error about WithTTL says -ttl.
var optionFlags = map[string]string{
	"WithTTL": "-ttl",
}

// flagError returns err as a usage error naming the flag, if it is about an
// option that a flag sets.
func flagError(err error) error {
	var ae *lock.ArgError
	if errors.As(err, &ae) {
		if name, ok := optionFlags[ae.Arg]; ok {
			return usageErrorf("invalid %s %s: %s", name, ae.Value, ae.Reason)
		}
	}
	return err
}

// benchKey is the state of one key. Only counter is left to the lock under
// test; the rest is atomic, so that a broken lock is measured rather than
// breaking the measurements.
type benchKey struct {
	name string

	// counter is read and written back plus one by each holder, with no
	// synchronisation but the lock: a lock that admits two holders at once
	// loses updates (and fails go test -race).
	counter int64

	holders    atomic.Int64  // holders now: between Acquire's return and Release
	maxHolders atomic.Int64  // the most holders at once
	waiting    atomic.Int64  // workers inside Acquire for this key
	lastToken  atomic.Uint64 // the token of the last holder plus 1; 0: none yet

	// released is when, in nanoseconds since the start, the last holder
	// began its Release with another worker waiting; -1 if it had none.
	released atomic.Int64

	_ [64]byte // keeps neighbouring keys off one cache line
}

// benchWorker is what one worker measures. Only the worker writes it, and
// only done is read before the worker ends.
type benchWorker struct {
	done            atomic.Int64 // acquisitions released
	acquisitions    int64
	wait            histogram
	handoff         histogram
	tokenViolations int64
	releaseErrors   int64
	releaseErr      error // the first
	_               [64]byte
}

// bench is one run of lockctl bench.
type bench struct {
	cfg   benchConfig
	m     *lock.Mutex
	nodes int // of a backend with several, such as Redis; else 0
	keys  []benchKey
	start time.Time

	tickets  atomic.Int64 // acquisitions begun, with -ops
	stopping atomic.Bool  // workers finish what they do and return

	// abort cancels the workers' contexts: their Acquire calls return, and
	// the leases they hold end. Used only when a run is stuck.
	abort context.CancelFunc

	mu  sync.Mutex
	err error // the first error that stopped the run
}

// runBench runs a benchmark as cfg says. It draws a progress line on stderr
// if cfg asks for one. It returns the results, which may be partial if it
// also returns an error, and nil if it could not start.
func runBench(ctx context.Context, cfg benchConfig, stderr io.Writer) (res *benchResult, err error) {
	if cfg.tick <= 0 {
		cfg.tick = progressEvery
	}
	if cfg.stallAfter <= 0 {
		cfg.stallAfter = 10*time.Second + 2*cfg.hold
	}
	// Bench's own flags win over a config's settings; and its workers wait
	// for their keys however few retries the config allows a service.
	m, backend, err := cfg.backend.open(lock.WithTTL(cfg.ttl), lock.WithAutoExtend(cfg.renew), lock.WithRetry(lock.DefaultRetry))
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := m.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()

	b := &bench{cfg: cfg, m: m, nodes: nodes(backend), keys: make([]benchKey, cfg.keys)}
	for i := range b.keys {
		b.keys[i].name = benchKeyPrefix + strconv.Itoa(i)
		b.keys[i].released.Store(-1)
	}
	// One acquisition before the clock starts checks the options, so that a
	// bad -ttl is a usage error and not the failure of every worker.
	if l, err := m.TryAcquire(ctx, b.keys[0].name); err == nil {
		if err := l.Release(ctx); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, lock.ErrNotAcquired) {
		return nil, flagError(err)
	}

	// The workers' contexts do not derive from ctx: cancelling a holder's
	// context ends its lease while its critical section runs, which would
	// count as a failure of the lock. An interrupt stops the loops instead.
	wctx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	b.abort = abort
	var interrupted atomic.Bool
	stopOnInterrupt := context.AfterFunc(ctx, func() {
		interrupted.Store(true)
		b.stopping.Store(true)
	})
	defer stopOnInterrupt()

	workers := make([]benchWorker, cfg.workers)
	var wg sync.WaitGroup
	b.start = time.Now()
	for i := range workers {
		wg.Add(1)
		go func() { // returns when the run stops, or at once if aborted
			defer wg.Done()
			b.work(wctx, &workers[i], uint64(i))
		}()
	}
	if cfg.ops == 0 || cfg.durationSet {
		t := time.AfterFunc(cfg.duration, func() { b.stopping.Store(true) })
		defer t.Stop()
	}
	workersDone := make(chan struct{})
	go func() { // returns when every worker has
		wg.Wait()
		close(workersDone)
	}()

	if err := b.watch(workers, workersDone, stderr); err != nil {
		return nil, err
	}
	elapsed := time.Since(b.start)

	res = b.result(workers, elapsed)
	res.Interrupted = interrupted.Load()
	b.mu.Lock()
	err = b.err
	b.mu.Unlock()
	if err != nil {
		res.Error = err.Error()
	}
	return res, err
}

// work is the loop of one worker.
func (b *bench) work(ctx context.Context, w *benchWorker, id uint64) {
	// A context of the worker's own: leases register on it, and other
	// workers' leases do not contend with them there.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rng := rand.New(rand.NewPCG(rand.Uint64(), id))
	for !b.stopping.Load() {
		if b.cfg.ops > 0 && b.tickets.Add(1) > b.cfg.ops {
			b.stopping.Store(true)
			return
		}
		k := &b.keys[0]
		if len(b.keys) > 1 {
			k = &b.keys[rng.IntN(len(b.keys))]
		}

		k.waiting.Add(1)
		t0 := time.Now()
		l, err := b.m.Acquire(ctx, k.name)
		t1 := time.Now()
		k.waiting.Add(-1)
		if err != nil {
			if ctx.Err() == nil {
				b.fail(fmt.Errorf("acquire %s: %w", k.name, err))
			}
			return
		}
		w.acquisitions++
		w.wait.record(t1.Sub(t0))
		n := k.holders.Add(1)
		for {
			m := k.maxHolders.Load()
			if n <= m || k.maxHolders.CompareAndSwap(m, n) {
				break
			}
		}
		tok := l.Token()
		if prev := k.lastToken.Swap(tok + 1); prev != 0 && tok+1 <= prev {
			w.tokenViolations++
		}
		if rel := k.released.Swap(-1); rel >= 0 {
			w.handoff.record(t1.Sub(b.start) - time.Duration(rel))
		}

		// The critical section: a read-modify-write that only the lock
		// makes safe.
		v := k.counter
		if b.cfg.hold > 0 {
			time.Sleep(b.cfg.hold)
		}
		k.counter = v + 1

		k.holders.Add(-1)
		rel := int64(-1)
		if k.waiting.Load() > 0 {
			rel = int64(time.Since(b.start))
		}
		k.released.Store(rel)
		if err := l.Release(ctx); err != nil {
			if w.releaseErrors == 0 {
				w.releaseErr = fmt.Errorf("release %s: %w", k.name, err)
			}
			w.releaseErrors++
		}
		w.done.Add(1)
	}
}

// fail records err as the error of the run, if it is the first, and stops it.
func (b *bench) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
	b.stopping.Store(true)
}

// watch waits for the workers, drawing the progress line. If no acquisition
// completes for cfg.stallAfter, it cancels the workers' contexts, and if
// they still have not returned stopGrace later, it returns an error: the
// workers are then left running.
func (b *bench) watch(workers []benchWorker, workersDone <-chan struct{}, stderr io.Writer) error {
	t := time.NewTicker(b.cfg.tick)
	defer t.Stop()
	var (
		p          = progress{w: stderr, on: b.cfg.progress}
		last       int64
		lastChange = b.start
		aborted    time.Time
	)
	defer p.clear()
	for {
		var now time.Time
		select {
		case <-workersDone:
			return nil
		case now = <-t.C:
		}
		var total int64
		for i := range workers {
			total += workers[i].done.Load()
		}
		p.draw(b, now, total)
		switch {
		case total != last:
			last, lastChange = total, now
		case aborted.IsZero() && now.Sub(lastChange) >= b.cfg.stallAfter:
			b.fail(fmt.Errorf("stalled: no acquisition completed in %v; cancelled the workers' contexts", b.cfg.stallAfter))
			b.abort()
			aborted = now
		case !aborted.IsZero() && now.Sub(aborted) >= stopGrace:
			b.mu.Lock()
			defer b.mu.Unlock()
			return fmt.Errorf("%w; workers still running %v later", b.err, stopGrace)
		}
	}
}

// progress draws the progress line.
type progress struct {
	w         io.Writer
	on        bool
	width     int // of the line drawn last
	lastTotal int64
	lastTime  time.Time
}

func (p *progress) draw(b *bench, now time.Time, total int64) {
	if !p.on {
		return
	}
	if p.lastTime.IsZero() {
		p.lastTime = b.start
	}
	rate := float64(total-p.lastTotal) / now.Sub(p.lastTime).Seconds()
	p.lastTotal, p.lastTime = total, now
	var limit string
	if b.cfg.ops > 0 {
		limit = fmt.Sprintf("%d/%d ops", total, b.cfg.ops)
	} else {
		limit = fmt.Sprintf("%d ops", total)
	}
	line := fmt.Sprintf("bench %s: %.1fs, %s, %.0f/s", b.cfg.backend.kind, now.Sub(b.start).Seconds(), limit, rate)
	if b.stopping.Load() {
		line += ", stopping"
	}
	fmt.Fprintf(p.w, "\r%-*s", p.width, line)
	p.width = len(line)
}

// clear erases the progress line, if one was drawn.
func (p *progress) clear() {
	if p.width > 0 {
		fmt.Fprintf(p.w, "\r%*s\r", p.width, "")
	}
}

// benchResult is the report of a run. Durations are in nanoseconds in JSON.
type benchResult struct {
	Backend      string        `json:"backend"`
	Nodes        int           `json:"nodes,omitempty"` // of a backend with several
	Workers      int           `json:"workers"`
	Keys         int           `json:"keys"`
	Hold         time.Duration `json:"hold_ns"`
	TTL          time.Duration `json:"ttl_ns"`
	Renew        bool          `json:"renew"`
	Elapsed      time.Duration `json:"elapsed_ns"`
	Acquisitions int64         `json:"acquisitions"`
	PerSecond    float64       `json:"acquisitions_per_second"`

	// Wait is the duration of each Acquire call.
	Wait summary `json:"wait"`
	// Handoff is the time from the start of a holder's Release to the
	// return of the next Acquire of the key, when a worker was waiting.
	Handoff summary `json:"handoff"`

	HoldersMax      int64  `json:"holders_max"`      // must be 1
	LostUpdates     int64  `json:"lost_updates"`     // must be 0
	TokenViolations int64  `json:"token_violations"` // must be 0
	ReleaseErrors   int64  `json:"release_errors"`
	ReleaseError    string `json:"release_error,omitempty"` // the first

	Interrupted bool     `json:"interrupted,omitempty"`
	Error       string   `json:"error,omitempty"`
	Failures    []string `json:"failures"` // the safety checks that failed
	OK          bool     `json:"ok"`
}

// result adds up what the workers measured. It is called after they ended.
func (b *bench) result(workers []benchWorker, elapsed time.Duration) *benchResult {
	r := &benchResult{
		Backend:  b.cfg.backend.kind,
		Nodes:    b.nodes,
		Workers:  b.cfg.workers,
		Keys:     b.cfg.keys,
		Hold:     b.cfg.hold,
		TTL:      b.cfg.ttl,
		Renew:    b.cfg.renew,
		Elapsed:  elapsed,
		Failures: []string{},
	}
	var wait, handoff histogram
	for i := range workers {
		w := &workers[i]
		r.Acquisitions += w.acquisitions
		r.TokenViolations += w.tokenViolations
		r.ReleaseErrors += w.releaseErrors
		if w.releaseErr != nil && r.ReleaseError == "" {
			r.ReleaseError = w.releaseErr.Error()
		}
		wait.merge(&w.wait)
		handoff.merge(&w.handoff)
	}
	r.Wait, r.Handoff = wait.summary(), handoff.summary()
	if elapsed > 0 {
		r.PerSecond = float64(r.Acquisitions) / elapsed.Seconds()
	}
	var counted int64
	for i := range b.keys {
		k := &b.keys[i]
		counted += k.counter
		r.HoldersMax = max(r.HoldersMax, k.maxHolders.Load())
	}
	r.LostUpdates = r.Acquisitions - counted

	if r.HoldersMax > 1 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d holders of one key at once, want 1", r.HoldersMax))
	}
	if r.LostUpdates != 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d lost updates, want 0", r.LostUpdates))
	}
	if r.TokenViolations != 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d tokens not greater than the previous holder's, want 0", r.TokenViolations))
	}
	r.OK = len(r.Failures) == 0 && b.err == nil
	return r
}

// writeTable prints r as an aligned table.
func (r *benchResult) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	row := func(name string, value any, check ...string) {
		// Only rows with a check have a third cell, so that no line ends
		// in padding.
		if len(check) == 0 {
			fmt.Fprintf(tw, "%s\t%v\n", name, value)
		} else {
			fmt.Fprintf(tw, "%s\t%v\t%s\n", name, value, strings.Join(check, " "))
		}
	}
	verdict := func(ok bool, want string) string {
		if ok {
			return "ok"
		}
		return "FAIL (want " + want + ")"
	}
	renew := "not renewed"
	if r.Renew {
		renew = "renewed"
	}
	row("backend", r.Backend)
	if r.Nodes > 0 {
		row("nodes", r.Nodes)
	}
	row("workers", r.Workers)
	row("keys", r.Keys)
	row("hold", r.Hold)
	row("ttl", fmt.Sprintf("%v, %s", r.TTL, renew))
	row("elapsed", formatDuration(r.Elapsed))
	row("acquisitions", r.Acquisitions)
	row("acquisitions/s", strconv.FormatFloat(r.PerSecond, 'f', 0, 64))
	row("wait p50", formatDuration(r.Wait.P50))
	row("wait p99", formatDuration(r.Wait.P99))
	row("wait max", formatDuration(r.Wait.Max))
	row("handoffs", r.Handoff.Count)
	row("handoff p50", formatDuration(r.Handoff.P50))
	row("handoff p99", formatDuration(r.Handoff.P99))
	row("handoff max", formatDuration(r.Handoff.Max))
	row("holders-at-once max", r.HoldersMax, verdict(r.HoldersMax <= 1, "1"))
	row("lost updates", r.LostUpdates, verdict(r.LostUpdates == 0, "0"))
	row("token order violations", r.TokenViolations, verdict(r.TokenViolations == 0, "0"))
	if r.ReleaseErrors > 0 {
		row("release errors", r.ReleaseErrors, r.ReleaseError)
	}
	if r.Interrupted {
		row("interrupted", "yes")
	}
	if r.Error != "" {
		row("error", r.Error)
	}
	return tw.Flush()
}

// formatDuration prints d with three significant digits or so.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return strconv.FormatInt(int64(d), 10) + "ns"
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e3, 'f', 2, 64) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + "s"
}
