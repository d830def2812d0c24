package rueidislock_test

// Client processes (harness H5 of RELIABILITY.md §6): the test binary
// re-executed as a lock client, so that a whole client can be paused with
// SIGSTOP as a long GC pause would, and so that several clients share
// nothing but the Redis nodes. Each child records its history with a
// locktest.Recorder on the host's monotonic clock; the parent merges the
// histories and runs the oracles on them (O1 overlap, O2 lost update, O3
// fencing).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/locktest"
	"github.com/leaselock/lock/rueidislock"
)

// childEnv carries a child's configuration, as JSON, to the re-executed
// test binary. TestHelperClient runs only when it is set.
const childEnv = "LOCK_CHILD"

// childLine prefixes the lines a child writes for its parent on stdout,
// apart from what the testing package prints there.
const childLine = "@@ "

// A childConfig is what a client process does.
type childConfig struct {
	Name        string        // prefix of the holders' names
	Addrs       []string      // the nodes (or their proxies)
	Keys        []string      // the keys, picked at random for each cycle
	TTL         time.Duration // the leases' TTL; they renew
	NodeTimeout time.Duration
	Goroutines  int           // workers, each acquiring in a loop
	Duration    time.Duration // how long the workers run at most (see child.finish)
	Seed        uint64
	History     string // the JSONL file the child records to
	Counter     string // the base name of the shared counters' files (O2); "" for none
	// Mutant, if not "", breaks the child's Backend as rueidislock.SetMutant
	// says: a negative control of the oracles on merged histories.
	Mutant string
	// Pause makes the child acquire Keys[0] once, write "holding" and wait
	// for a line on stdin before its critical section, so that the parent
	// can stop it there (S11). Its other fields but Goroutines apply.
	Pause bool
}

// A childReport is what a child says when its work is done.
type childReport struct {
	Acquired int // leases taken
	Counted  int // increments of the shared counter made with the lease valid
	Failed   int // Acquire calls that failed before the end of the run
	Lost     int // leases that ended before their holder released them
	Errors   []string
}

// A resumeReport is what a paused child saw of its lease when it resumed,
// before doing anything else.
type resumeReport struct {
	Err   string // the lease's Err(), "" if nil
	Done  bool   // whether its Done channel was closed
	Token uint64
}

// TestHelperClient is not a test: it is the body of a client process
// started by startChild, and skips otherwise.
func TestHelperClient(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("not a test: the client process of the multi-process scenarios, run by startChild")
	}
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatalf("%s: %v", childEnv, err)
	}
	f, err := os.Create(cfg.History)
	if err != nil {
		t.Fatal(err)
	}
	rec := locktest.NewRecorder(f)
	defer func() {
		if err := errors.Join(rec.Close(), f.Close()); err != nil {
			t.Error(err)
		}
	}()
	b, err := rueidislock.Dial(cfg.Addrs, rueidislock.WithNodeTimeout(cfg.NodeTimeout))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mutant != "" {
		rueidislock.SetMutant(b, cfg.Mutant)
	}
	m := lock.New(b, lock.WithTTL(cfg.TTL))
	defer m.Close()
	if cfg.Pause {
		pausedClient(t, m, rec, cfg)
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration)
	defer cancel()
	// A line on stdin ends the run early; the end of stdin, which the
	// parent closes once it has the report, lets the child exit.
	parentDone := make(chan struct{})
	go func() {
		defer close(parentDone)
		in := bufio.NewReader(os.Stdin)
		for {
			if _, err := in.ReadString('\n'); err != nil {
				return
			}
			cancel()
		}
	}()
	say("ready", nil)
	var mu sync.Mutex
	var report childReport
	var wg sync.WaitGroup
	for g := range cfg.Goroutines {
		wg.Go(func() {
			r := clientLoop(ctx, m, rec, cfg, g)
			mu.Lock()
			defer mu.Unlock()
			report.Acquired += r.Acquired
			report.Counted += r.Counted
			report.Failed += r.Failed
			report.Lost += r.Lost
			report.Errors = append(report.Errors, r.Errors...)
		})
	}
	wg.Wait()
	say("done", report)
	<-parentDone
}

// startChildren starts n children with cfg, named name0, name1, ..., each
// with a seed and a history file of its own, and waits until they are
// ready to work.
func startChildren(t *testing.T, n int, name string, cfg childConfig) []*child {
	t.Helper()
	var children []*child
	for i := range n {
		c := cfg
		c.Name = fmt.Sprintf("%s%d", name, i)
		c.Seed = cfg.Seed + uint64(i) + 1
		c.History = locktest.HistoryFile(t, c.Name, cfg.Seed)
		children = append(children, startChild(t, c))
	}
	for _, c := range children {
		if err := c.next("ready", nil, childWait); err != nil {
			t.Fatal(err)
		}
	}
	return children
}

// TestChildrenCatchDoubleHolders is the negative control of the merged
// histories: with a quorum of N/2 (mutant M3), client processes
// contending for one key hold it two at a time, and O1 on the merged
// histories reports it (O2 and O3 are logged). On two nodes, a quorum of
// one, each hand-off of the key is a race for two nodes that two waiters
// split about half the time, so a run of a few dozen hand-offs always
// shows a double holder.
func TestChildrenCatchDoubleHolders(t *testing.T) {
	_, addrs := startNodes(t, 2)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	counter := filepath.Join(t.TempDir(), "counter")
	children := startChildren(t, 3, "m3-", childConfig{
		Addrs: addrs, Keys: []string{"m3:key"}, TTL: faultTTL, NodeTimeout: faultNodeTimeout,
		Goroutines: 2, Duration: 3 * faultTTL, Seed: seed, Counter: counter, Mutant: rueidislock.M3HalfQuorum,
	})
	sum := waitChildren(t, children, childWait)
	rec := mergeHistories(t, children)
	o1 := rec.CheckOverlap()
	o3 := rec.CheckFencing(new(locktest.FencedStore))
	v, err := sumCounters(counter, "m3:key")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d leases; O1: %v; O2: counter %d after %d sections; O3: %v", sum.Acquired, o1 != nil, v, sum.Counted, o3 != nil)
	if o1 == nil {
		t.Errorf("O1 saw no overlap with a quorum of N/2 in %d leases", sum.Acquired)
	}
}

// clientLoop is worker g of a child: acquire a random key, run a critical
// section, release, until ctx is done.
func clientLoop(ctx context.Context, m *lock.Mutex, rec *locktest.Recorder, cfg childConfig, g int) childReport {
	var r childReport
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(g)))
	holder := fmt.Sprintf("%s/g%d", cfg.Name, g)
	for ctx.Err() == nil {
		key := cfg.Keys[rng.IntN(len(cfg.Keys))]
		l, err := m.Acquire(ctx, key)
		if err != nil {
			if ctx.Err() == nil {
				r.Failed++
			}
			continue
		}
		r.Acquired++
		sp := rec.Acquired(holder, l)
		criticalSection(l, sp, cfg, rng, &r)
		sp.End()
		if l.Err() != nil && !errors.Is(l.Err(), ctx.Err()) {
			r.Lost++
		}
		// On a detached context: a lease ending with the run is still
		// released, and an error here is the lease's cause.
		_ = l.Release(context.WithoutCancel(ctx))
	}
	return r
}

// criticalSection writes to the fenced resource and increments the shared
// counter, each only while the lease is valid, as a careful holder does.
func criticalSection(l *lock.Lease, sp *locktest.RecordedLease, cfg childConfig, rng *rand.Rand, r *childReport) {
	if l.Err() != nil {
		return
	}
	sp.Write()
	if cfg.Counter == "" {
		return
	}
	path := counterFile(cfg.Counter, l.Key())
	v, err := readCounter(path)
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
		return
	}
	// O2's pause, U(0, 0.1·TTL): long enough for an overlapping holder to
	// read the same value.
	time.Sleep(time.Duration(rng.Int64N(int64(cfg.TTL / 10))))
	// A section whose lease ended meanwhile does not write. Between this
	// check and the write the lease can still end, but the next holder
	// needs the keys gone first, a drift (12 ms at a TTL of 1 s) after the
	// deadline, and then a round trip: a stall longer than that here would
	// count as a lost update although no two holders overlapped.
	if l.Err() != nil {
		return
	}
	if err := writeCounter(path, v+1); err != nil {
		r.Errors = append(r.Errors, err.Error())
		return
	}
	r.Counted++
}

// pausedClient is the child of S11: it acquires Keys[0], says "holding",
// and waits for the parent's line on stdin (the parent stops it
// meanwhile). On resume it reports what its lease says before anything
// else, then writes to the fenced resource anyway, as a holder that does
// not check would, and releases.
func pausedClient(t *testing.T, m *lock.Mutex, rec *locktest.Recorder, cfg childConfig) {
	ctx := context.Background()
	l, err := m.Acquire(ctx, cfg.Keys[0])
	if err != nil {
		t.Fatal(err)
	}
	sp := rec.Acquired(cfg.Name, l)
	say("holding", l.Token())
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatalf("waiting for the parent: %v", err)
	}
	// First thing after the pause: what does the lease say?
	var seen resumeReport
	if err := l.Err(); err != nil {
		seen.Err = err.Error()
	}
	select {
	case <-l.Done():
		seen.Done = true
	default:
	}
	seen.Token = l.Token()
	sp.Write() // unchecked: fencing must refuse it
	sp.End()
	say("resumed", seen)
	_ = l.Release(ctx)
	say("done", childReport{Acquired: 1})
}

// say writes one line for the parent: childLine, what, and v as JSON.
func say(what string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s%s %s\n", childLine, what, b)
}

// counterFile returns the file of key's shared counter: one per key, since
// only the holders of one key exclude each other.
func counterFile(base, key string) string { return fmt.Sprintf("%s-%x", base, key) }

// sumCounters returns the sum of the shared counters of keys.
func sumCounters(base string, keys ...string) (int64, error) {
	var sum int64
	for _, k := range keys {
		v, err := readCounter(counterFile(base, k))
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// readCounter reads a shared counter (0 if the file is missing).
func readCounter(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// writeCounter replaces the shared counter at once (rename), so that a
// reader sees the old value or the new one, never a torn write.
func writeCounter(path string, v int64) error {
	tmp := fmt.Sprintf("%s.%d.%d", path, os.Getpid(), rand.Uint64())
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(v, 10)), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// A child is a client process started by startChild.
type child struct {
	name    string
	cfg     childConfig
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan string // the child's lines for the parent, without childLine
	out     syncBuffer  // everything else it printed, for failures
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// startChild starts the test binary again as a client with cfg, and makes
// sure it is gone when t ends.
func startChild(t *testing.T, cfg childConfig) *child {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	timeout := cfg.Duration + 2*time.Minute
	c := &child{name: cfg.Name, cfg: cfg, lines: make(chan string, 16), exited: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperClient$", "-test.count=1", "-test.timeout="+timeout.String())
	// Under -race the child would sleep 1 s at exit (atexit_sleep_ms).
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	c.cmd.Env = append(os.Environ(), childEnv+"="+string(raw), "GORACE="+gorace)
	c.cmd.SysProcAttr = redistest.SysProcAttr()
	c.cmd.Stderr = &c.out
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), childLine); ok {
				c.lines <- line
			} else {
				c.out.Write(sc.Bytes())
				c.out.Write([]byte{'\n'})
			}
		}
		c.waitErr = c.cmd.Wait()
		close(c.lines)
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
			return
		default:
		}
		_ = c.cmd.Process.Signal(syscall.SIGCONT)
		_ = c.cmd.Process.Kill()
		<-c.exited
	})
	return c
}

// next returns the child's next line for the parent, which must be what,
// and decodes its JSON into v unless v is nil.
func (c *child) next(what string, v any, timeout time.Duration) error {
	select {
	case line, ok := <-c.lines:
		if !ok {
			<-c.exited
			return fmt.Errorf("child %s exited (%v) before saying %q; it printed:\n%s", c.name, c.waitErr, what, c.out.String())
		}
		got, payload, _ := strings.Cut(line, " ")
		if got != what {
			return fmt.Errorf("child %s said %q, want %q", c.name, line, what)
		}
		if v == nil {
			return nil
		}
		return json.Unmarshal([]byte(payload), v)
	case <-time.After(timeout):
		return fmt.Errorf("child %s said nothing for %v, waiting for %q; it printed:\n%s", c.name, timeout, what, c.out.String())
	}
}

// finish asks a working child to end its run now rather than after its
// Duration.
func (c *child) finish() error {
	_, err := c.stdin.Write([]byte("stop\n"))
	return err
}

// stop stops the child with SIGSTOP, and returns once it is stopped.
func (c *child) stop() error {
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	return redistest.WaitStopped(c.cmd.Process.Pid, nil)
}

// cont resumes a stopped child with SIGCONT.
func (c *child) cont() error { return c.cmd.Process.Signal(syscall.SIGCONT) }

// report waits at most timeout for the child to say "done", returns its
// report, and closes its stdin, which lets it exit.
func (c *child) report(timeout time.Duration) (childReport, error) {
	var r childReport
	err := c.next("done", &r, timeout)
	c.stdin.Close()
	if err == nil && len(r.Errors) > 0 {
		err = fmt.Errorf("child %s: %s", c.name, strings.Join(r.Errors, "; "))
	}
	return r, err
}

// exit waits at most timeout for the child to exit, and returns an error
// unless it succeeded.
func (c *child) exit(timeout time.Duration) error {
	select {
	case <-c.exited:
	case <-time.After(timeout):
		return fmt.Errorf("child %s did not exit %v after its report", c.name, timeout)
	}
	if c.waitErr != nil {
		return fmt.Errorf("child %s: %v; it printed:\n%s", c.name, c.waitErr, c.out.String())
	}
	return nil
}

// waitChildren waits for the reports of every child and then for their
// exits, and adds up the reports.
func waitChildren(t *testing.T, children []*child, timeout time.Duration) childReport {
	t.Helper()
	var sum childReport
	for _, c := range children {
		r, err := c.report(timeout)
		if err != nil {
			t.Error(err)
		}
		sum.Acquired += r.Acquired
		sum.Counted += r.Counted
		sum.Failed += r.Failed
		sum.Lost += r.Lost
	}
	for _, c := range children {
		if err := c.exit(timeout); err != nil {
			t.Error(err)
		}
	}
	return sum
}

// mergeHistories reads the children's histories into one recording.
func mergeHistories(t *testing.T, children []*child) *locktest.Recording {
	t.Helper()
	var paths []string
	for _, c := range children {
		paths = append(paths, c.cfg.History)
	}
	rec, err := locktest.ReadRecording(paths...)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}
