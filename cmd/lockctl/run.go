package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/rueidislock"
)

// The exit statuses of run of its own; otherwise it exits with its
// command's status.
const (
	// exitNotAcquired: the lock was not acquired within -wait.
	exitNotAcquired = 3
	// exitLeaseLost: the lease was lost before the command exited.
	exitLeaseLost = 4
	// exitCannotRun: the command was found but could not be started, as
	// the shells say it.
	exitCannotRun = 126
	// exitNotFound: the command was not found, as the shells say it.
	exitNotFound = 127
)

// DefaultGrace is the default of -grace: how long a command has to exit
// after SIGTERM, when the lease is lost, before it gets SIGKILL.
const DefaultGrace = 10 * time.Second

// The variables run sets in its command's environment.
const (
	envKey   = "LOCK_KEY"   // the backend key, namespace included
	envToken = "LOCK_TOKEN" // the fencing token, in decimal
)

const runHelp = `
Run acquires KEY, then runs COMMAND with its arguments while it holds the
lock, renewing the lease every third of -ttl, and releases the lock when
COMMAND exits. COMMAND gets LOCK_KEY (the key, namespace included) and
LOCK_TOKEN (the fencing token, in decimal) in its environment. If the lease
is lost, COMMAND gets SIGTERM and, -grace later, SIGKILL. Signals sent to
lockctl (INT, TERM, HUP, QUIT, USR1, USR2) are passed on to COMMAND.

The backend must be Redis: -redis, -config or LOCK_CONFIG. Exit status:
that of COMMAND (128+n if signal n killed it); 1 if lockctl failed; 2 for
bad usage; 3 if the lock was not acquired within -wait; 4 if the lease was
lost before COMMAND exited; 126 if COMMAND could not be run; 127 if it was
not found. See the package documentation (go doc) for the details.`

// runConfig is what the flags and arguments of run set.
type runConfig struct {
	backend   backendFlags
	namespace namespaceFlag
	wait      waitFlag
	ttl       time.Duration
	ttlSet    bool
	grace     time.Duration
	verbose   bool
	key       string   // as given, without the namespace
	argv      []string // the command and its arguments
}

// waitFlag is -wait: a duration, or "forever", which is negative.
type waitFlag struct{ d time.Duration }

func (w *waitFlag) String() string {
	if w.d < 0 {
		return "forever"
	}
	return w.d.String()
}

func (w *waitFlag) Set(s string) error {
	if s == "forever" {
		w.d = -1
		return nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return errors.New(`must be a duration such as 30s, or "forever"`)
	case d < 0:
		return errors.New("must not be negative")
	}
	w.d = d
	return nil
}

// parseRun parses and checks the flags and arguments of run.
func parseRun(args []string, stderr io.Writer) (runConfig, error) {
	cfg := runConfig{wait: waitFlag{-1}}
	fs := newFlagSet("run", "[flags] KEY [--] COMMAND [ARG...]", runHelp, stderr)
	cfg.backend.register(fs)
	fs.Var(&cfg.namespace, "namespace", "lock the key `ns`:KEY, as the seed's lockNs does (default: the config's namespace, if any; -namespace= for none)")
	fs.Var(&cfg.wait, "wait", "how long to wait for the lock: a `duration`, 0 to try once, or forever")
	fs.DurationVar(&cfg.ttl, "ttl", lock.DefaultTTL, "lease TTL, renewed every third of it; without -ttl, the config's ttl if it sets one")
	fs.DurationVar(&cfg.grace, "grace", DefaultGrace, "after a lost lease, how long COMMAND has to exit after SIGTERM before SIGKILL; 0 for SIGKILL at once")
	fs.BoolVar(&cfg.verbose, "v", false, "log the lock's events (acquired, renewed, lost, node errors) to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, &usageError{err: err, printed: true}
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "ttl" {
			cfg.ttlSet = true
		}
	})

	rest := fs.Args()
	if len(rest) == 0 {
		return cfg, usageErrorf("missing KEY and COMMAND")
	}
	cfg.key, rest = rest[0], rest[1:]
	switch {
	case len(rest) > 0 && rest[0] == "--":
		rest = rest[1:]
	case len(rest) > 0 && strings.HasPrefix(rest[0], "-"):
		return cfg, usageErrorf("flag %s after KEY: flags go before KEY (use -- before a COMMAND that starts with -)", rest[0])
	}
	cfg.argv = rest
	switch {
	case cfg.key == "":
		return cfg, usageErrorf("invalid KEY \"\": must not be empty")
	case len(cfg.argv) == 0:
		return cfg, usageErrorf("missing COMMAND after KEY %q", cfg.key)
	case cfg.ttl <= 0:
		return cfg, usageErrorf("invalid -ttl %v: must be positive", cfg.ttl)
	case cfg.grace < 0:
		return cfg, usageErrorf("invalid -grace %v: must not be negative", cfg.grace)
	}
	if err := cfg.backend.resolve(); err != nil {
		return cfg, err
	}
	if cfg.backend.kind == kindMemory {
		return cfg, cfg.backend.needRedis("run")
	}
	return cfg, nil
}

// runCommand is "lockctl run".
func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseRun(args, stderr)
	if err != nil {
		return err
	}
	if errNoRun != nil {
		return errNoRun
	}
	// Find the command before taking the lock: a typo should not wait.
	path, err := exec.LookPath(cfg.argv[0])
	if err != nil {
		code := exitCannotRun
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = exitNotFound
		}
		return &exitError{code: code, err: err}
	}

	// From here on, the signals run passes on must not end lockctl, which
	// would leave the command running with nobody to renew its lease.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

	opts := []lock.Option{lock.WithAutoExtend(true)}
	if cfg.verbose {
		opts = append(opts, lock.WithLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	m, _, err := cfg.backend.open(opts...)
	if err != nil {
		return err
	}
	defer m.Close()

	r := &runner{cfg: cfg, m: m, sigs: sigs, stderr: stderr}
	lease, err := r.acquire(ctx)
	if err != nil {
		return err
	}
	if cfg.verbose {
		fmt.Fprintf(stderr, "lockctl run: acquired %s, token %d\n", lease.Key(), lease.Token())
	}

	cmd := exec.Command(path, cfg.argv[1:]...)
	cmd.Args[0] = cfg.argv[0] // as typed, as a shell passes it
	cmd.Env = append(os.Environ(), envKey+"="+lease.Key(), envToken+"="+strconv.FormatUint(lease.Token(), 10))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	// Only when stdout or stderr is not a file does Wait copy the output;
	// background processes the command left holding the pipe must not keep
	// lockctl waiting.
	cmd.WaitDelay = time.Second
	return r.supervise(ctx, lease, cmd)
}

// runner is one run of "lockctl run".
type runner struct {
	cfg    runConfig
	m      *lock.Mutex
	sigs   <-chan os.Signal
	stderr io.Writer

	// endLease cancels the context the lease derives from, once it is
	// released. Set by acquire.
	endLease context.CancelCauseFunc
}

// errWaitTimeout ends a wait that took -wait.
var errWaitTimeout = errors.New("wait timed out")

// A signalError ends a wait interrupted by a signal.
type signalError struct{ sig os.Signal }

func (e *signalError) Error() string { return "interrupted by " + signalName(e.sig) }

// acquire acquires the key as -wait says. The lease's context does not
// derive from ctx, nor end with a signal: once the command runs, those are
// passed on to it, and the lock is released only when it has exited. Until
// Acquire returns, though, they end the wait.
func (r *runner) acquire(ctx context.Context) (*lock.Lease, error) {
	waitCtx, cancelWait := context.WithCancelCause(ctx)
	defer cancelWait(nil)
	if r.cfg.wait.d > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeoutCause(waitCtx, r.cfg.wait.d, errWaitTimeout)
		defer cancel()
	}
	leaseCtx, endLease := context.WithCancelCause(context.WithoutCancel(ctx))
	r.endLease = endLease
	unlink := context.AfterFunc(waitCtx, func() { endLease(context.Cause(waitCtx)) })

	stopWatch, watched := make(chan struct{}), make(chan struct{})
	go func() { // returns when the wait is over
		defer close(watched)
		select {
		case sig := <-r.sigs:
			cancelWait(&signalError{sig})
		case <-stopWatch:
		}
	}()

	// -wait, not the config's retry count, bounds the wait.
	opts := []lock.Option{lock.WithRetry(-1)}
	if r.cfg.wait.d == 0 {
		opts[0] = lock.WithRetry(0)
	}
	if r.cfg.ttlSet {
		opts = append(opts, lock.WithTTL(r.cfg.ttl))
	}
	if r.cfg.verbose {
		fmt.Fprintf(r.stderr, "lockctl run: acquiring %s (wait %v)\n", r.cfg.key, &r.cfg.wait)
	}
	var (
		lease *lock.Lease
		err   error
	)
	if ns := r.cfg.backend.namespace(r.cfg.namespace); ns != "" {
		lease, err = r.m.AcquireNS(leaseCtx, r.cfg.key, append(opts, lock.WithNamespace(ns))...)
	} else {
		lease, err = r.m.Acquire(leaseCtx, r.cfg.key, opts...)
	}
	close(stopWatch)
	<-watched
	if err == nil && !unlink() {
		// The wait ended as the lease came, and ended the lease with it.
		_ = lease.Release(context.Background())
		err = errors.Join(lock.ErrNotAcquired, context.Cause(waitCtx))
	}
	if err == nil {
		return lease, nil
	}
	endLease(nil)

	var serr *signalError
	cause := context.Cause(waitCtx)
	switch {
	case errors.As(cause, &serr):
		return nil, &exitError{code: 128 + signalNumber(serr.sig), err: fmt.Errorf("%s: not acquired: %v", r.cfg.key, serr)}
	case errors.Is(cause, errWaitTimeout):
		return nil, &exitError{code: exitNotAcquired, err: fmt.Errorf("%s: not acquired within %v%s", r.cfg.key, r.cfg.wait.d, nodeErrors(err))}
	case errors.Is(err, lock.ErrInvalid):
		return nil, flagError(err)
	case errors.Is(err, lock.ErrNotAcquired) && ctx.Err() == nil:
		return nil, &exitError{code: exitNotAcquired, err: fmt.Errorf("%s: not acquired%s", r.cfg.key, nodeErrors(err))}
	}
	return nil, fmt.Errorf("%s: %w", r.cfg.key, err)
}

// nodeErrors returns what err says of the nodes that failed, after ": ",
// or "" if none did: the rest of a failed Acquire's error says no more
// than "not acquired".
func nodeErrors(err error) string {
	var msgs []string
	var walk func(error)
	walk = func(err error) {
		switch x := err.(type) {
		case *rueidislock.NodeError:
			// Retries repeat the same errors: show each once.
			if !slices.Contains(msgs, x.Error()) {
				msgs = append(msgs, x.Error())
			}
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	if len(msgs) == 0 {
		return ""
	}
	return ": " + strings.Join(msgs, "; ")
}

// supervise runs cmd under lease until cmd exits: it passes signals on,
// stops cmd when the lease is lost, and releases the lease at the end.
func (r *runner) supervise(ctx context.Context, lease *lock.Lease, cmd *exec.Cmd) error {
	defer r.endLease(nil) // after the releases below
	key := lease.Key()
	c := newChild(cmd)
	started, exited := make(chan error, 1), make(chan error, 1)
	go func() { // returns when the command has exited
		// The command's death signal on Linux (see procAttr) comes when the
		// thread that started it ends: keep that thread until it exits.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		_ = lease.Release(context.Background())
		code := exitCannotRun
		if errors.Is(err, os.ErrNotExist) {
			code = exitNotFound
		}
		return &exitError{code: code, err: err}
	}

	var (
		lost      error // why the lease ended, once it did
		leaseDone = lease.Done()
		ctxDone   = ctx.Done()
		kill      <-chan time.Time
		waitErr   error
	)
loop:
	for {
		select {
		case waitErr = <-exited:
			break loop
		case sig := <-r.sigs:
			c.forward(sig)
		case <-ctxDone:
			// In process, ctx plays the part of the signals.
			ctxDone = nil
			c.forward(syscall.SIGTERM)
		case <-leaseDone:
			leaseDone, lost = nil, lease.Err()
			if r.cfg.grace == 0 {
				fmt.Fprintf(r.stderr, "lockctl run: lease of %s lost (%v): killing the command\n", key, lost)
				c.kill()
				continue
			}
			fmt.Fprintf(r.stderr, "lockctl run: lease of %s lost (%v): stopping the command (SIGTERM, then SIGKILL after %v)\n", key, lost, r.cfg.grace)
			c.stop()
			t := time.NewTimer(r.cfg.grace)
			defer t.Stop()
			kill = t.C
		case <-kill:
			kill = nil
			fmt.Fprintf(r.stderr, "lockctl run: the command did not exit within %v of SIGTERM: SIGKILL\n", r.cfg.grace)
			c.kill()
		}
	}

	status := cmd.ProcessState
	if lost == nil {
		// Release reports a loss that happened before the command exited
		// but after the last look at the lease: the command's work may
		// then have overlapped another holder's as well.
		rerr := lease.Release(context.Background())
		switch {
		case errors.Is(rerr, lock.ErrLeaseLost) || errors.Is(rerr, lock.ErrExpired):
			lost = rerr
		case rerr != nil:
			fmt.Fprintf(r.stderr, "lockctl run: release %s: %v (the lock ends at its TTL)\n", key, rerr)
		}
	}
	if lost != nil {
		// Whatever the command left running works without the lock now.
		c.killRest()
		_ = lease.Release(context.Background())
		return &exitError{code: exitLeaseLost, err: fmt.Errorf("lease of %s lost before the command exited (%v); the command %s", key, lost, describeExit(status))}
	}
	if status == nil {
		return fmt.Errorf("wait for the command: %w", waitErr)
	}
	if code := exitStatus(status); code != 0 {
		return &exitError{code: code}
	}
	if waitErr != nil {
		// The command exited 0, but its output could not all be copied.
		return fmt.Errorf("the command's output: %w", waitErr)
	}
	return nil
}

// describeExit says how a command ended, as in "exited with status 0" or "was
// killed by SIGKILL".
func describeExit(ps *os.ProcessState) string {
	switch {
	case ps == nil:
		return "did not report how it ended"
	case exitStatus(ps) > 128 && ps.ExitCode() < 0:
		return "was killed by " + signalName(syscall.Signal(exitStatus(ps)-128))
	}
	return "exited with status " + strconv.Itoa(ps.ExitCode())
}
