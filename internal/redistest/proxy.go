package redistest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrProxyClosed is returned by methods of a [Proxy] after [Proxy.Close].
var ErrProxyClosed = errors.New("redistest: proxy closed")

// Direction selects one or both halves of a proxied connection.
type Direction uint8

const (
	// Requests is the client-to-server half of a connection.
	Requests Direction = 1 << iota
	// Replies is the server-to-client half: replies and RESP3 pushes.
	Replies
	// Both is Requests and Replies.
	Both = Requests | Replies
)

// action is what a fault does to the bytes of one direction. The zero action
// forwards them at once.
type action struct {
	drop          bool
	delay, jitter time.Duration
}

func (a action) delays() bool { return a.delay > 0 || a.jitter > 0 }

func (a action) String() string {
	switch {
	case a.drop:
		return "drop"
	case a.jitter > 0:
		return fmt.Sprintf("latency(%v±%v)", a.delay, a.jitter)
	case a.delay > 0:
		return fmt.Sprintf("latency(%v)", a.delay)
	default:
		return "pass"
	}
}

// connFault is the part of a fault that acts on whole connections.
type connFault uint8

const (
	connOpen   connFault = iota // accept, and apply the per-direction actions
	connReset                   // reset current and new connections
	connRefuse                  // reset current connections, refuse new ones
)

// Fault is what a [Proxy] does to the traffic of one client's view of the
// target. Build one with [Pass], [Latency], [Blackhole], [DropReplies],
// [HoldReplies], [ResetConns] or [Refuse], optionally narrowed with
// [Fault.Only]. The zero Fault is Pass. Faults are comparable values.
//
// A fault acts on the bytes of each direction as they are read from the
// sender: they are forwarded at once, delayed, or dropped. Delayed bytes
// keep their order; a chunk waits behind an earlier one that is due later.
type Fault struct {
	conn     connFault
	req, rep action
}

// Pass forwards everything unchanged.
func Pass() Fault { return Fault{} }

// Latency delays the bytes of both directions by d plus a uniform random
// amount in [-jitter, +jitter] (at least zero), drawn for each chunk read.
// A round trip therefore takes at least 2(d-jitter) more than without the
// proxy. Use [Fault.Only] to delay one direction. Negative durations panic.
func Latency(d, jitter time.Duration) Fault {
	if d < 0 || jitter < 0 {
		panic(fmt.Sprintf("redistest: Latency(%v, %v): negative duration", d, jitter))
	}
	a := action{delay: d, jitter: jitter}
	return Fault{req: a, rep: a}
}

// HoldReplies forwards requests at once, so the server applies them, and
// delivers each reply d after the server sent it: Kleppmann's delayed
// packet, where the client learns of its success too late. It equals
// Latency(d, 0).Only(Replies). Switching to [Pass] delivers held replies at
// once, so a long d followed by Set(Pass()) releases them on demand.
func HoldReplies(d time.Duration) Fault {
	return Latency(d, 0).Only(Replies)
}

// Blackhole accepts connections and reads from both sides but forwards
// nothing, as a network partition would: the server sees no requests and
// the client gets no replies (nor a FIN if the server closes).
func Blackhole() Fault {
	return Fault{req: action{drop: true}, rep: action{drop: true}}
}

// DropReplies forwards requests, so the server applies them, and discards
// the replies: the write happened but its acknowledgement is lost. It
// equals Blackhole().Only(Replies).
func DropReplies() Fault {
	return Blackhole().Only(Replies)
}

// ResetConns resets every connection of the view with a TCP RST when it is
// set, and resets each new connection as soon as it is accepted, for as long
// as it stays set. A dial therefore succeeds and the first read or write on
// it fails with "connection reset by peer" (or, if the RST comes first, the
// dial fails so). Setting ResetConns and then [Pass] resets the current
// connections once.
func ResetConns() Fault { return Fault{conn: connReset} }

// Refuse resets every connection of the view, like ResetConns, and stops
// listening, so new dials fail at once with "connection refused" as if the
// server were down. The port stays reserved for the view and listening
// resumes when another fault is set.
func Refuse() Fault { return Fault{conn: connRefuse} }

// Only returns f restricted to the directions in dir; the other direction
// passes. Only(Both) returns f. Only panics for [ResetConns] and [Refuse],
// which act on whole connections.
func (f Fault) Only(dir Direction) Fault {
	if f.conn != connOpen {
		panic("redistest: Fault.Only on " + f.String() + ", which acts on whole connections")
	}
	if dir&Requests == 0 {
		f.req = action{}
	}
	if dir&Replies == 0 {
		f.rep = action{}
	}
	return f
}

// action returns what f does to the direction dir (Requests or Replies).
func (f Fault) action(dir Direction) action {
	if dir == Requests {
		return f.req
	}
	return f.rep
}

// String names the fault as the constructors do, for example
// "drop-replies" or "latency(40ms±10ms)".
func (f Fault) String() string {
	switch {
	case f.conn == connReset:
		return "reset"
	case f.conn == connRefuse:
		return "refuse"
	case f.req == f.rep && f.req.drop:
		return "blackhole"
	case f.req == f.rep:
		return f.req.String()
	case f.req == action{} && f.rep.drop:
		return "drop-replies"
	case f.req == action{} && f.rep.jitter == 0:
		return fmt.Sprintf("hold-replies(%v)", f.rep.delay)
	}
	var parts []string
	if f.req != (action{}) {
		parts = append(parts, "requests:"+f.req.String())
	}
	if f.rep != (action{}) {
		parts = append(parts, "replies:"+f.rep.String())
	}
	return strings.Join(parts, " ")
}

// ProxyStats counts what a [Proxy] has done, for one client's view or for
// all of them. Frames are counted by following the RESP framing of each
// stream (command arrays and inline commands from clients; every RESP2 and
// RESP3 type from servers), however the bytes are split across reads. A
// frame is counted where its last byte went: forwarded or dropped.
type ProxyStats struct {
	// Accepted is the number of client connections accepted, including
	// those reset at once.
	Accepted int64
	// Reset is the number of client connections the proxy ended with a TCP
	// RST: by [ResetConns] or [Refuse], on leaving [Blackhole] or
	// [DropReplies] after dropping bytes, or because the target could not
	// be dialled.
	Reset int64
	// Active is the number of connections currently proxied.
	Active int64
	// Requests is the number of commands forwarded to the target. A
	// command is counted before it is written, so a client that has its
	// reply finds it counted; one whose write fails (the connection then
	// ends) is counted too.
	Requests int64
	// RequestsDropped is the number of commands read from clients and
	// discarded.
	RequestsDropped int64
	// Replies is the number of RESP values (pushes included) forwarded to
	// clients, counted as Requests are.
	Replies int64
	// RepliesDropped is the number of RESP values read from the target and
	// discarded.
	RepliesDropped int64
	// Commands counts Requests by upper-cased command name, for example
	// Commands["EVALSHA"]. Clients send commands of their own (rueidis
	// sends HELLO on connect and PING when idle), so a test that needs an
	// exact count of its own commands should read them here.
	Commands map[string]int64
}

func (s *ProxyStats) add(o *ProxyStats) {
	s.Accepted += o.Accepted
	s.Reset += o.Reset
	s.Active += o.Active
	s.Requests += o.Requests
	s.RequestsDropped += o.RequestsDropped
	s.Replies += o.Replies
	s.RepliesDropped += o.RepliesDropped
	if s.Commands == nil {
		s.Commands = map[string]int64{}
	}
	for name, n := range o.Commands {
		s.Commands[name] += n
	}
}

// Proxy is an in-process TCP proxy in front of one Redis node, whose faults
// can be switched while clients use it. Each client that should see the
// node differently gets its own view: a listening address of its own
// ([Proxy.Listen]) with a fault of its own ([Proxy.SetFor]). [Proxy.Addr] is
// the view of the client named "".
//
// A Proxy is safe for concurrent use. It runs goroutines until
// [Proxy.Close], which the caller must call (or use [StartProxy]).
type Proxy struct {
	target string
	dialer net.Dialer
	ctx    context.Context // canceled by Close, to end dials to the target
	cancel context.CancelFunc

	// mu guards everything below, and the queues and counters of every
	// view and connection: the proxy carries test traffic, so one lock is
	// cheap and keeps fault switches atomic with respect to the data.
	mu     sync.Mutex
	closed bool
	def    Fault // the fault of views created later
	views  map[string]*view
	rng    uint64 // splitmix64 state, for jitter

	wg sync.WaitGroup // accept loops and connections
}

// view is one client's listening address and fault.
type view struct {
	name  string
	addr  string // fixed for the view's life, across Refuse
	fault Fault
	ln    net.Listener  // nil while refusing
	lnEnd chan struct{} // closed when ln's accept loop has exited
	hold  int           // while refusing, a bound socket reserving the port; else -1
	conns map[*proxyConn]struct{}
	stats ProxyStats
}

// targetDialTimeout bounds the proxy's dial to the target for each accepted
// connection.
const targetDialTimeout = 2 * time.Second

// NewProxy starts a proxy to target (host:port) on a free loopback port,
// given by [Proxy.Addr], with every view in [Pass]. The caller must call
// [Proxy.Close].
//
// On Linux, view ports are picked below the kernel's ephemeral port range,
// so a proxy never takes a port that a redis-server of this package is
// about to bind (on start, or on restart after a kill).
func NewProxy(target string) (*Proxy, error) {
	p := &Proxy{
		target: target,
		dialer: net.Dialer{Timeout: targetDialTimeout},
		views:  map[string]*view{},
		rng:    1, // any seed: jitter need not be unpredictable
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if _, err := p.Listen(""); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// StartProxy starts a proxy to target for the test, as [NewProxy] does, and
// registers a cleanup that closes it. It fails the test if the proxy cannot
// listen.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Addr returns the address of the default view, the one of client "".
func (p *Proxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.views[""].addr
}

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Listen returns the address of client's view of the target, opening a new
// listening port the first time a name is used. A client that dials only
// this address sees only the faults set for it with [Proxy.SetFor] (and by
// [Proxy.Set], which sets all views). A new view starts with the fault last
// given to Set, or Pass.
func (p *Proxy) Listen(client string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return "", ErrProxyClosed
	}
	if v := p.views[client]; v != nil {
		return v.addr, nil
	}
	ln, err := listenFresh()
	if err != nil {
		return "", fmt.Errorf("redistest: proxy to %s: %w", p.target, err)
	}
	v := &view{name: client, addr: ln.Addr().String(), hold: -1, conns: map[*proxyConn]struct{}{}}
	p.views[client] = v
	p.startAcceptLocked(v, ln)
	return v.addr, p.applyLocked(v, p.def)
}

// Set sets f on every view, current and created later, replacing faults
// given to [Proxy.SetFor]. It takes effect on open connections at once:
// bytes read after it returns are treated by f, and bytes still queued by an
// earlier fault are dropped if f drops their direction, delivered at once if
// f forwards it without delay, or kept to their schedule otherwise.
//
// A connection that has lost bytes to [Blackhole] or [DropReplies] is reset
// as soon as a fault would forward its direction again: the stream has a
// gap, and a pipelining client would otherwise pair later replies with the
// wrong requests. (A real partition that outlasts TCP's retransmissions
// ends the connection the same way.) So switching back to Pass recovers by
// reconnecting.
//
// The error is non-nil only if a view could not resume listening after
// [Refuse], or after [Proxy.Close].
func (p *Proxy) Set(f Fault) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrProxyClosed
	}
	p.def = f
	var errs []error
	for _, v := range p.views {
		errs = append(errs, p.applyLocked(v, f))
	}
	return errors.Join(errs...)
}

// SetFor sets f on the view of client alone, as [Proxy.Set] does for all
// views. The view must exist ([Proxy.Listen]); SetFor("", f) sets the view
// of [Proxy.Addr].
func (p *Proxy) SetFor(client string, f Fault) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrProxyClosed
	}
	v := p.views[client]
	if v == nil {
		return fmt.Errorf("redistest: proxy has no view for client %q; call Listen first", client)
	}
	return p.applyLocked(v, f)
}

// FaultFor returns the fault currently set on client's view, and false if
// there is no such view.
func (p *Proxy) FaultFor(client string) (Fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v := p.views[client]; v != nil {
		return v.fault, true
	}
	return Fault{}, false
}

// Stats returns the counters summed over all views.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := ProxyStats{Commands: map[string]int64{}}
	for _, v := range p.views {
		s.add(&v.stats)
	}
	return s
}

// StatsFor returns the counters of client's view (zero if there is none).
func (p *Proxy) StatsFor(client string) ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := ProxyStats{Commands: map[string]int64{}}
	if v := p.views[client]; v != nil {
		s = v.stats
		s.Commands = maps.Clone(v.stats.Commands)
		if s.Commands == nil {
			s.Commands = map[string]int64{}
		}
	}
	return s
}

// Close stops listening, closes every proxied connection and waits for the
// proxy's goroutines to exit. It is idempotent; afterwards Listen, Set and
// SetFor return [ErrProxyClosed].
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cancel()
	var errs []error
	for _, v := range p.views {
		if v.ln != nil {
			stopListening(v.ln)
			v.ln = nil
		}
		errs = append(errs, v.release())
		for c := range v.conns {
			c.closeLocked(false)
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	return errors.Join(errs...)
}

// applyLocked makes f the fault of v: it stops or resumes listening and
// brings the open connections into line.
func (p *Proxy) applyLocked(v *view, f Fault) error {
	v.fault = f
	var err error
	switch {
	case f.conn == connRefuse && v.ln != nil:
		// Reserve the port before closing the listener, so that no other
		// socket can take it while dials are refused.
		err = v.reserve()
		stopListening(v.ln)
		<-v.lnEnd // so that no connection accepted before is served after
		v.ln = nil
	case f.conn != connRefuse && v.ln == nil:
		var ln net.Listener
		if ln, err = listenOn(v.addr); err == nil {
			p.startAcceptLocked(v, ln)
			err = v.release()
		}
	}
	if err != nil {
		err = fmt.Errorf("redistest: proxy view %q (%s): %s: %w", v.name, v.addr, f, err)
	}
	for c := range v.conns {
		c.refaultLocked(f)
	}
	return err
}

// reserve binds a socket to v's port without listening on it. While it is
// bound, the kernel answers connection attempts with RST (ECONNREFUSED to
// the dialer), and no one else can bind the port.
func (v *view) reserve() error {
	fd, err := reservePort(v.addr)
	if err != nil {
		return err
	}
	v.hold = fd
	return nil
}

// release closes the socket reserving v's port, if any.
func (v *view) release() error {
	if v.hold < 0 {
		return nil
	}
	err := syscall.Close(v.hold)
	v.hold = -1
	return err
}

// startAcceptLocked makes ln v's listener and starts accepting on it.
func (p *Proxy) startAcceptLocked(v *view, ln net.Listener) {
	v.ln, v.lnEnd = ln, make(chan struct{})
	p.wg.Add(1)
	go p.accept(v, ln, v.lnEnd) // returns when ln is closed, by Refuse or Close
}

// accept serves the connections ln accepts until ln is closed, then closes
// end. It never takes p.mu, so a holder of p.mu may wait for end.
func (p *Proxy) accept(v *view, ln net.Listener, end chan struct{}) {
	defer p.wg.Done()
	defer close(end)
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors, say, or a listener shut down but not
			// yet closed: back off instead of spinning.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		// The counter is above zero (this goroutine), so Add may race
		// with Close's Wait.
		p.wg.Add(1)
		go p.serve(v, c.(*net.TCPConn)) // returns when the connection is closed
	}
}

// serve dials the target for one accepted connection and proxies it until
// it ends.
func (p *Proxy) serve(v *view, client *net.TCPConn) {
	defer p.wg.Done()
	p.mu.Lock()
	v.stats.Accepted++
	ok := !p.closed && v.fault.conn == connOpen
	if !ok {
		v.stats.Reset++
	}
	p.mu.Unlock()
	if !ok {
		resetTCP(client)
		return
	}

	conn, err := p.dialer.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		p.mu.Lock()
		v.stats.Reset++
		p.mu.Unlock()
		resetTCP(client) // as a dead server's host would
		return
	}
	c := newProxyConn(p, v, client, conn.(*net.TCPConn))
	p.mu.Lock()
	if p.closed || v.fault.conn != connOpen {
		// The fault changed during the dial.
		if p.closed {
			c.closeLocked(false)
		} else {
			c.resetLocked()
		}
		p.mu.Unlock()
		return
	}
	v.conns[c] = struct{}{}
	v.stats.Active++
	p.mu.Unlock()

	c.run()

	p.mu.Lock()
	delete(v.conns, c)
	v.stats.Active--
	p.mu.Unlock()
}

// jitterLocked returns a's delay with its jitter applied.
func (p *Proxy) jitterLocked(a action) time.Duration {
	d := a.delay
	if a.jitter > 0 {
		p.rng += splitmixGamma
		d += time.Duration(splitmix(p.rng)%uint64(2*a.jitter+1)) - a.jitter
	}
	return max(d, 0)
}

// splitmix64 makes the harness's random numbers: it must not import
// math/rand outside test files (see .ci/run), and needs nothing better.
// Feed it a state advanced by splitmixGamma for each number.
const splitmixGamma = 0x9e3779b97f4a7c15

func splitmix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
