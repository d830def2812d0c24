// Lockctl works with the locks of github.com/leaselock/lock from the command
// line: it runs a command while holding a lock, shows the state of a lock on
// its Redis nodes, and measures a backend.
//
// Usage:
//
//	lockctl <command> [flags] [arguments]
//	lockctl help [command]
//
// The commands are:
//
//	run      run a command while holding a lock
//	inspect  show the state of a lock on each Redis node
//	bench    measure the throughput, latency and safety of a backend
//
// # Choosing the backend
//
// Every command takes the same flags to choose where locks live, and reads
// the first of these that is given:
//
//  1. -redis host:port,...: Redis nodes, as host:port or redis:// or
//     rediss:// URLs (with user, password and database), separated by
//     commas or in repeated flags. Every other setting has its default.
//  2. -config FILE: a JSON file in the format of LOCK_CONFIG.
//  3. The LOCK_CONFIG environment variable, the JSON value that services of
//     the npm package @leverege/lock are deployed with (see package
//     lockconfig for its fields), so that lockctl locks what they lock.
//  4. Otherwise, the memory backend, which lives inside the lockctl process:
//     bench can measure it, but run and inspect refuse it, since no other
//     process could see its locks.
//
// For example, with one Redis node, or three:
//
//	LOCK_CONFIG='{"type":"redis","connection":{"host":"10.0.0.1","port":6379}}' lockctl run job -- ./job.sh
//	lockctl run -redis 10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379 job -- ./job.sh
//
// Only that one source is read: given -redis, a broken LOCK_CONFIG in the
// environment does not matter. -redis and -config together are an error.
// -backend memory forces the memory backend over LOCK_CONFIG; -backend redis
// insists on Redis nodes. -node-timeout bounds each call to one node,
// in place of the config's nodeTimeout (default 50ms; inspect's default is
// 1s). Namespaces work as in the seed: run and inspect lock or read the key
// "NS:KEY" when -namespace NS is given, or the config has a namespace;
// -namespace= takes the config's away. Errors never show a password or a
// lock's value.
//
// # Run
//
//	lockctl run [-wait forever] [-ttl 10s] [-grace 10s] [-namespace ns] [-v]
//	            [backend flags] KEY [--] COMMAND [ARG...]
//
// Run acquires KEY, then starts COMMAND, and releases the lock when COMMAND
// exits, as flock(1), etcdctl lock and consul lock do, but with a lease: the
// lease is renewed every third of -ttl while COMMAND runs, and COMMAND is
// stopped if it is lost. Flags go before KEY; "--" is needed only before a
// COMMAND that starts with "-". A COMMAND that cannot be found fails before
// the lock is taken.
//
// COMMAND inherits lockctl's standard input, output, error and environment,
// and two more variables:
//
//	LOCK_KEY    the key held, namespace included
//	LOCK_TOKEN  the lease's fencing token, in decimal
//
// Tokens strictly increase from one holder of a key to the next. Storage
// that COMMAND writes can refuse a write that carries a token smaller than
// the last it saw: that is what stops a command that runs on after its
// lease was lost, which no lock can stop by itself.
//
// -wait bounds the wait for the lock: "forever" (the default) waits until
// the lock is free or lockctl gets a signal, 0 tries once, and a duration
// such as 30s waits that long. The config's retry count does not apply;
// its retry delay and jitter do. -ttl is the lease's TTL (default: the
// config's ttl, else 10s). -v logs the lock's events to standard error.
//
// If the lease is lost (a majority of nodes no longer hold the key, or no
// renewal succeeded before the lease's deadline), lockctl says so on
// standard error and sends COMMAND SIGTERM, then SIGKILL if it has not
// exited -grace later (default 10s; 0 sends SIGKILL at once). Keep -grace
// short: from the loss on, another process may hold the lock. Once COMMAND
// exits after a loss, lockctl kills whatever it left running in its process
// group, and exits with status 4.
//
// Signals: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to
// lockctl are passed on to COMMAND, which keeps the lock until it exits;
// lockctl itself does not exit on them while COMMAND runs, since that would
// leave COMMAND working with nobody to renew its lease. While lockctl still
// waits for the lock, any of them ends the wait, with status 128+n. On
// Linux, COMMAND gets SIGKILL if lockctl itself is killed.
//
// Process groups: when lockctl does not run in the foreground of a terminal
// (under cron, systemd, CI, a script with no terminal), COMMAND leads a
// process group of its own, and every signal above goes to that whole group:
// a lost lease stops a shell pipeline and the jobs of a script, not only the
// shell, and never lockctl or the processes beside it in its own job, such
// as "| tee log". In the foreground of a terminal, COMMAND stays in
// lockctl's process group instead, so that it can read the terminal and ^C,
// ^Z and fg work as for any command; the terminal sends ^C (SIGINT), ^\
// (SIGQUIT) and a hangup (SIGHUP) to both, so lockctl does not pass those
// on again, and it signals COMMAND's own process only. A lockctl suspended
// with ^Z for longer than the TTL loses the lease.
//
// When COMMAND exits, lockctl releases the lock and exits with COMMAND's
// status. Processes COMMAND left running in the background are not waited
// for, and run without the lock.
//
// # Inspect
//
//	lockctl inspect [-namespace ns] [-json] [backend flags] KEY
//
// Inspect reads KEY on every Redis node at once and prints a row per node:
// whether it holds the key, a fingerprint of the holder, the key's remaining
// TTL ("none" for a key without expiry, which no lock set) and the node's
// fencing counter for the key, which outlives the key; then a summary:
//
//	key "job": 3 nodes, quorum 2
//
//	NODE  ADDRESS         HELD  HOLDER    TTL     FENCE
//	0     10.0.0.1:6379   yes   5d41402a  9.81s   1764150000123456
//	1     10.0.0.2:6379   yes   5d41402a  9.81s   1764150000123456
//	2     10.0.0.3:6379   no    -         -       1764150000123456
//
//	held: 2 of 3 nodes agree on holder 5d41402a (quorum 2)
//
// The fingerprint is the first 8 hex digits of the SHA-1 of the lock's
// value, computed by the node: the value itself, which would let anyone
// release the lock, never leaves it. Nodes that show the same fingerprint
// hold the key for the same lease. The key is "held" when at least a quorum
// (a majority) of the nodes agree on one holder; "not held" when they cannot,
// even counting nodes that did not answer; "unknown" otherwise. A node that
// could not be read shows its error. -json prints the same as a JSON object
// (durations in nanoseconds). Inspect changes nothing, and takes no lock: a
// lock may change hands while it reads.
//
// # Bench
//
//	lockctl bench [-workers 8] [-keys 1] [-duration 5s | -ops n] [-hold 0]
//	              [-ttl 10s] [-renew] [-progress] [-json] [backend flags]
//
// Bench starts -workers goroutines that contend for -keys keys. Each one
// loops: it acquires a random key, with a context of its own, runs a critical
// section that reads a per-key counter, waits -hold, and writes the counter
// plus one, and releases the key. The counter is a plain int guarded by
// nothing but the lock, so a lock that lets two holders in at once loses
// updates. Bench runs for -duration, or until -ops acquisitions if that is
// set (and for at most -duration if both are set); then each worker finishes
// the acquisition it is in, its wait included.
//
// With no backend flags and no LOCK_CONFIG, bench measures the memory
// backend; "lockctl bench -redis 127.0.0.1:6379" measures Redis. Its keys are
// named "lockctl:bench:N". Its -ttl and -renew win over the config's ttl and
// autoExtend, and its workers wait for their keys whatever the config's
// retry count; the config's other settings apply.
//
// It prints a table, or a JSON object with -json, of: acquisitions per
// second; the wait of each acquisition (the duration of its Acquire call) as
// p50, p99 and max; the hand-off latency (from the start of a holder's
// Release to the return of the next Acquire of its key, counted when another
// worker was waiting) as p50, p99 and max; and three safety checks: the most
// holders of one key at once (must be 1), the lost updates of the counters
// (must be 0), and the fencing tokens that did not increase from one holder
// of a key to the next (must be 0). While it runs, a progress line is shown
// on standard error if that is a terminal, or if -progress is set.
//
// An interrupt (^C) stops bench after the operations under way, and it
// reports what it measured; a second interrupt exits at once.
//
// # Exit status
//
// All commands exit with status 2 on a usage error, such as a bad flag or a
// config that does not parse, and 1 if they failed otherwise (bench: also
// if a safety check failed; inspect: if too few nodes answered to tell
// whether the key is held). Run exits with its command's status, and
// otherwise with:
//
//	3    the lock was not acquired within -wait (held by another, or too
//	     few nodes answered)
//	4    the lease was lost before COMMAND exited: COMMAND's work may have
//	     overlapped another holder's (whatever COMMAND's own status)
//	126  COMMAND was found but could not be started
//	127  COMMAND was not found
//	128+n  COMMAND was killed by signal n, or signal n ended the wait
//
// A COMMAND may exit with 3 or 4 itself; when run exits with 3 or 4 of its
// own, it says why on standard error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
)

// A command is one subcommand of lockctl.
type command struct {
	name    string
	summary string
	// run runs the command with the arguments after its name. It writes its
	// results to stdout and diagnostics to stderr. It returns a usageError
	// for bad arguments, an exitError for a status of its own, and
	// flag.ErrHelp when -h asked for its usage.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
	// signals is set for a command that handles signals itself; the
	// others get a ctx that the first interrupt cancels.
	signals bool
}

// commands lists the subcommands in the order usage shows them.
var commands = []command{
	{name: "run", summary: "run a command while holding a lock", run: runCommand, signals: true},
	{name: "inspect", summary: "show the state of a lock on each Redis node", run: inspectCommand},
	{name: "bench", summary: "measure the throughput, latency and safety of a backend", run: benchCommand},
}

func main() {
	ctx := context.Background()
	if len(os.Args) < 2 || lookup(os.Args[1]) == nil || !lookup(os.Args[1]).signals {
		// The first interrupt cancels ctx, which commands take as a request
		// to stop cleanly; stop then restores the default, so a second one
		// exits.
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt)
		context.AfterFunc(ctx, stop)
		defer stop()
	}
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run runs lockctl with args, the arguments after the program name, and
// returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name, args := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) == 0 {
			usage(stdout)
			return 0
		}
		// "lockctl help bench" is "lockctl bench -h", with the usage on stdout.
		name = args[0]
		if lookup(name) != nil {
			args, stderr = []string{"-h"}, stdout
		}
	}
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "lockctl: unknown command %q\n", name)
		fmt.Fprintf(stderr, "Run 'lockctl help' for usage.\n")
		return 2
	}
	err := cmd.run(ctx, args, stdout, stderr)
	var (
		uerr *usageError
		xerr *exitError
	)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &xerr):
		if xerr.err != nil {
			fmt.Fprintf(stderr, "lockctl %s: %v\n", cmd.name, xerr.err)
		}
		return xerr.code
	case errors.As(err, &uerr):
		// The flag package has printed its own errors from Parse already.
		if !uerr.printed {
			fmt.Fprintf(stderr, "lockctl %s: %v\n", cmd.name, err)
			fmt.Fprintf(stderr, "Run 'lockctl help %s' for usage.\n", cmd.name)
		}
		return 2
	default:
		fmt.Fprintf(stderr, "lockctl %s: %v\n", cmd.name, err)
		return 1
	}
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Lockctl works with the locks of github.com/leaselock/lock.\n\n")
	fmt.Fprintf(w, "Usage:\n\n\tlockctl <command> [flags]\n\nThe commands are:\n\n")
	for _, c := range commands {
		fmt.Fprintf(w, "\t%-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'lockctl help <command>' for the flags of a command.\n")
}

// A usageError reports bad arguments: lockctl exits with status 2.
type usageError struct {
	err     error
	printed bool // the flag package has printed it, with the usage
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error {
	return &usageError{err: fmt.Errorf(format, a...)}
}

// An exitError makes lockctl exit with code, after it printed err if err is
// not nil: run passes on the status of its command this way.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// newFlagSet returns the FlagSet of the subcommand name, which writes its
// errors and usage to stderr and returns them from Parse rather than exit.
// The usage shows synopsis, then help, the manual of the command in short,
// then the flags.
func newFlagSet(name, synopsis, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("lockctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: lockctl %s %s\n\n", name, synopsis)
		if help != "" {
			fmt.Fprintf(fs.Output(), "%s\n\n", strings.TrimSpace(help))
		}
		fmt.Fprintf(fs.Output(), "Flags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args with fs, and allows no arguments after the flags.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err: err, printed: true}
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
