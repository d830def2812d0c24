// Lockctl works with the locks of github.com/leaselock/lock from the command
// line.
//
// Usage:
//
//	lockctl <command> [flags]
//	lockctl help [command]
//
// The commands are:
//
//	bench    measure the throughput, latency and safety of a backend
//
// # Bench
//
//	lockctl bench [-backend memory] [-workers 8] [-keys 1] [-duration 5s | -ops n]
//	              [-hold 0] [-ttl 10s] [-renew] [-progress] [-json]
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
// Lockctl exits with status 0 on success, 1 if a command failed, including a
// safety check of bench, and 2 on a usage error such as a bad flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

// A command is one subcommand of lockctl.
type command struct {
	name    string
	summary string
	// run runs the command with the arguments after its name. It writes its
	// results to stdout and diagnostics to stderr. It returns a usageError
	// for bad arguments, and flag.ErrHelp when -h asked for its usage.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in the order usage shows them.
var commands = []command{
	{name: "bench", summary: "measure the throughput, latency and safety of a backend", run: benchCommand},
}

func main() {
	// The first interrupt cancels ctx, which commands take as a request to
	// stop cleanly; stop then restores the default, so a second one exits.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
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
	var uerr *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
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

// newFlagSet returns the FlagSet of the subcommand name, which writes its
// errors and usage to stderr and returns them from Parse rather than exit.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("lockctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: lockctl %s %s\n\nFlags:\n", name, synopsis)
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
