package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/leaselock/lock/rueidislock"
)

const inspectHelp = `
Inspect reads KEY on each Redis node at once and shows, per node, whether
it holds the key, a fingerprint of its holder (the first 8 hex digits of
the SHA-1 of the lock's value, computed by the node: the value, which
would let anyone release the lock, is never shown), the remaining TTL and
the fencing counter; then whether a quorum of nodes agrees on one holder.
It changes nothing. Exit status: 0 if it could tell whether the key is
held, 1 if too few nodes answered to tell, 2 for bad usage.`

// inspectConfig is what the flags and arguments of inspect set.
type inspectConfig struct {
	backend   backendFlags
	namespace namespaceFlag
	json      bool
	key       string // as given, without the namespace
}

// inspectNodeTimeout is inspect's default -node-timeout: longer than a
// lock's, since inspect holds no lease, and a person waits for its answer.
const inspectNodeTimeout = time.Second

// parseInspect parses and checks the flags and arguments of inspect.
func parseInspect(args []string, stderr io.Writer) (inspectConfig, error) {
	var cfg inspectConfig
	fs := newFlagSet("inspect", "[flags] KEY", inspectHelp, stderr)
	cfg.backend.nodeTimeout = inspectNodeTimeout
	cfg.backend.register(fs)
	fs.Var(&cfg.namespace, "namespace", "inspect the key `ns`:KEY (default: the config's namespace, if any; -namespace= for none)")
	fs.BoolVar(&cfg.json, "json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, &usageError{err: err, printed: true}
	}
	switch fs.NArg() {
	case 0:
		return cfg, usageErrorf("missing KEY")
	case 1:
	default:
		return cfg, usageErrorf("unexpected argument %q after KEY", fs.Arg(1))
	}
	cfg.key = fs.Arg(0)
	if cfg.key == "" {
		return cfg, usageErrorf("invalid KEY \"\": must not be empty")
	}
	if err := cfg.backend.resolve(); err != nil {
		return cfg, err
	}
	if cfg.backend.kind != kindRedis {
		// The memory backend lives in the process that made it: another
		// process has nothing to look at.
		return cfg, cfg.backend.needRedis("inspect")
	}
	return cfg, nil
}

// inspectResult is what inspect prints. Durations are in nanoseconds in
// JSON, as in bench's.
type inspectResult struct {
	Key    string        `json:"key"` // the backend key, namespace included
	Nodes  []inspectNode `json:"nodes"`
	Quorum int           `json:"quorum"`

	// State is "held" when at least Quorum nodes agree on a holder, "not
	// held" when they cannot, even counting the nodes that did not answer,
	// and "unknown" otherwise.
	State  string `json:"state"`
	Holder string `json:"holder,omitempty"` // the holder most nodes agree on
	Agree  int    `json:"agree"`            // how many nodes hold the key for it
}

type inspectNode struct {
	Node   int           `json:"node"`
	Addr   string        `json:"addr"`
	Held   bool          `json:"held"`
	Holder string        `json:"holder,omitempty"`
	TTL    time.Duration `json:"ttl_ns"` // negative: the key has no expiry
	Fence  uint64        `json:"fence"`
	Error  string        `json:"error,omitempty"`
}

// The values of inspectResult.State.
const (
	stateHeld    = "held"
	stateNotHeld = "not held"
	stateUnknown = "unknown"
)

// inspectCommand is "lockctl inspect".
func inspectCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseInspect(args, stderr)
	if err != nil {
		return err
	}
	key := cfg.key
	if ns := cfg.backend.namespace(cfg.namespace); ns != "" {
		key = ns + ":" + key // as AcquireNS makes it
	}
	b, err := cfg.backend.cfg.Backend()
	if err != nil {
		return fmt.Errorf("open redis backend (%s): %w", cfg.backend.source, err)
	}
	defer b.Close()
	rb, ok := b.(*rueidislock.Backend)
	if !ok {
		return fmt.Errorf("open redis backend: got a %T", b) // not reached
	}
	states, err := rb.Inspect(ctx, key)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", key, err)
	}
	res := newInspectResult(key, states, rb.Quorum())

	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(res)
	} else {
		err = res.writeTable(stdout)
	}
	if err != nil {
		return err
	}
	if res.State == stateUnknown {
		return &exitError{code: 1}
	}
	return nil
}

// newInspectResult sums up the states of key's nodes.
func newInspectResult(key string, states []rueidislock.NodeState, quorum int) *inspectResult {
	res := &inspectResult{Key: key, Quorum: quorum, Nodes: make([]inspectNode, len(states))}
	failed := 0
	for i, s := range states {
		res.Nodes[i] = inspectNode{Node: s.Node, Addr: s.Addr, Held: s.Held, Holder: s.Holder, TTL: s.TTL, Fence: s.Fence}
		if s.Err != nil {
			res.Nodes[i].Error = s.Err.Error()
			failed++
		}
	}
	res.Holder, res.Agree = rueidislock.Agreement(states)
	switch {
	case res.Agree >= quorum:
		res.State = stateHeld
	case res.Agree+failed < quorum:
		res.State = stateNotHeld
	default:
		// The nodes that did not answer could make a quorum of the
		// holder, or not.
		res.State = stateUnknown
	}
	return res
}

// writeTable prints r as a table of the nodes and a summary line.
func (r *inspectResult) writeTable(w io.Writer) error {
	nodes := "nodes"
	if len(r.Nodes) == 1 {
		nodes = "node"
	}
	fmt.Fprintf(w, "key %s: %d %s, quorum %d\n\n", strconv.Quote(r.Key), len(r.Nodes), nodes, r.Quorum)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tADDRESS\tHELD\tHOLDER\tTTL\tFENCE\n")
	for _, n := range r.Nodes {
		if n.Error != "" {
			// The error is not a column: it would widen them all.
			tw.Flush()
			fmt.Fprintf(w, "%-4d  %s  error: %s\n", n.Node, n.Addr, n.Error)
			continue
		}
		held, holder, ttl, fence := "no", "-", "-", "-"
		if n.Held {
			held, holder, ttl = "yes", n.Holder, formatTTL(n.TTL)
		}
		if n.Fence != 0 {
			fence = strconv.FormatUint(n.Fence, 10)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", n.Node, n.Addr, held, holder, ttl, fence)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%s\n", r.summary())
	return nil
}

// summary is the last line of the table.
func (r *inspectResult) summary() string {
	answered := 0
	for _, n := range r.Nodes {
		if n.Error == "" {
			answered++
		}
	}
	switch {
	case r.State == stateHeld:
		return fmt.Sprintf("held: %d of %d nodes agree on holder %s (quorum %d)", r.Agree, len(r.Nodes), r.Holder, r.Quorum)
	case r.State == stateUnknown:
		return fmt.Sprintf("unknown: %d of %d nodes answered, and %d agree on a holder (quorum %d)", answered, len(r.Nodes), r.Agree, r.Quorum)
	case r.Agree == 0:
		return fmt.Sprintf("not held: no node holds the key (quorum %d)", r.Quorum)
	}
	return fmt.Sprintf("not held: at most %d of %d nodes agree on a holder (quorum %d)", r.Agree, len(r.Nodes), r.Quorum)
}

// formatTTL prints a remaining TTL to the millisecond, which is what Redis
// keeps.
func formatTTL(d time.Duration) string {
	if d < 0 {
		return "none"
	}
	return d.Round(time.Millisecond).String()
}
