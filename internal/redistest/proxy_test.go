package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// The tests here assert lower bounds on delays, and upper bounds only with
// a wide margin, so that a loaded machine (or -race) cannot fail them.

// echoServer listens on a loopback port and echoes every connection until
// the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	// On a port where redistest never starts a server (see listenFresh):
	// a listener on a port picked by freePort would answer for a
	// redis-server starting in a parallel test.
	ln, err := listenFresh()
	check(t, err)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				io.Copy(c, c)
				c.Close()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func dialT(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	check(t, err)
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// echoRoundTrip writes msg and reads it back from an echo, within timeout.
func echoRoundTrip(c net.Conn, msg string, timeout time.Duration) (time.Duration, error) {
	begin := time.Now()
	if err := c.SetDeadline(begin.Add(timeout)); err != nil {
		return 0, err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return 0, err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return 0, err
	}
	if string(buf) != msg {
		return 0, errors.New("echo garbled: " + string(buf))
	}
	return time.Since(begin), nil
}

// mustRoundTrip asserts that msg comes back through c.
func mustRoundTrip(t *testing.T, c net.Conn, msg string) time.Duration {
	t.Helper()
	d, err := echoRoundTrip(c, msg, 5*time.Second)
	if err != nil {
		t.Fatalf("round trip of %q: %v", msg, err)
	}
	return d
}

// mustNotEcho asserts that nothing comes back within wait.
func mustNotEcho(t *testing.T, c net.Conn, msg string, wait time.Duration) {
	t.Helper()
	if _, err := echoRoundTrip(c, msg, wait); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("round trip of %q: %v, want a timeout", msg, err)
	}
}

// mustBeReset asserts that reading c fails with a reset within a second.
func mustBeReset(t *testing.T, c net.Conn) {
	t.Helper()
	check(t, c.SetReadDeadline(time.Now().Add(time.Second)))
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v, want ECONNRESET", err)
	}
}

// pingArray is PING as a command array, which is also a valid reply (an
// array of one bulk string), so its echo is counted in both directions.
const pingArray = "*1\r\n$4\r\nPING\r\n"

// mustDialReset asserts that a connection to addr is reset: the dial
// succeeds and reading fails, or, if the RST beats the dialer's check, the
// dial itself fails with a reset.
func mustDialReset(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if errors.Is(err, syscall.ECONNRESET) {
		return
	}
	check(t, err)
	defer c.Close()
	mustBeReset(t, c)
}

// pollUntil polls cond every few milliseconds until it holds or 5 s pass.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still false after 5s", what)
		}
	}
}

func TestFaultString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		f    Fault
		want string
	}{
		{Fault{}, "pass"},
		{Pass(), "pass"},
		{Latency(40*time.Millisecond, 10*time.Millisecond), "latency(40ms±10ms)"},
		{Latency(40*time.Millisecond, 0).Only(Requests), "requests:latency(40ms)"},
		{Latency(40*time.Millisecond, 10*time.Millisecond).Only(Replies), "replies:latency(40ms±10ms)"},
		{HoldReplies(time.Second), "hold-replies(1s)"},
		{Blackhole(), "blackhole"},
		{Blackhole().Only(Both), "blackhole"},
		{DropReplies(), "drop-replies"},
		{Blackhole().Only(Requests), "requests:drop"},
		{ResetConns(), "reset"},
		{Refuse(), "refuse"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
	if HoldReplies(time.Second) != Latency(time.Second, 0).Only(Replies) || DropReplies() != Blackhole().Only(Replies) {
		t.Error("HoldReplies or DropReplies differs from its documented equivalent")
	}
}

func TestFaultMisusePanics(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]func(){
		"Only(reset)":      func() { ResetConns().Only(Replies) },
		"Only(refuse)":     func() { Refuse().Only(Replies) },
		"negative latency": func() { Latency(-time.Millisecond, 0) },
		"negative jitter":  func() { Latency(0, -time.Millisecond) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(r.(string), "redistest: ") {
					t.Errorf("%s: recovered %v, want a redistest panic", name, r)
				}
			}()
			f()
		}()
	}
}

func TestProxyPass(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	p := StartProxy(t, target)
	if p.Target() != target || p.Addr() == target {
		t.Fatalf("Target %q, Addr %q", p.Target(), p.Addr())
	}
	if addr, err := p.Listen(""); err != nil || addr != p.Addr() {
		t.Fatalf(`Listen("") = %q, %v; want Addr %q`, addr, err, p.Addr())
	}
	c := dialT(t, p.Addr())
	mustRoundTrip(t, c, "PING\r\n")
	// Large writes in both directions at once, to exercise flow control.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	check(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	errc := make(chan error, 1)
	go func() { _, err := c.Write(big); errc <- err }()
	got := make([]byte, len(big))
	_, err := io.ReadFull(c, got)
	check(t, err)
	check(t, <-errc)
	if !bytes.Equal(got, big) {
		t.Fatal("1 MiB echo garbled")
	}
	if s := p.Stats(); s.Accepted != 1 || s.Active != 1 || s.Reset != 0 || s.Commands["PING"] != 1 {
		t.Fatalf("Stats = %+v", s)
	}
	// A client's FIN reaches the server, whose FIN comes back: the proxied
	// connection ends cleanly.
	check(t, c.CloseWrite())
	check(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after CloseWrite: %v, want EOF", err)
	}
	pollUntil(t, "Active == 0", func() bool { return p.Stats().Active == 0 })
}

func TestProxyLatency(t *testing.T) {
	t.Parallel()
	p := StartProxy(t, echoServer(t))
	c := dialT(t, p.Addr())
	const d = 40 * time.Millisecond
	for _, tc := range []struct {
		f   Fault
		min time.Duration
	}{
		{Latency(d, 0), 2 * d},
		{Latency(d, 0).Only(Requests), d},
		{Latency(d, 0).Only(Replies), d},
		{Latency(d, d/2), d},
		{HoldReplies(d), d},
	} {
		check(t, p.Set(tc.f))
		if got := mustRoundTrip(t, c, "x"); got < tc.min {
			t.Errorf("%v: round trip %v, want at least %v", tc.f, got, tc.min)
		}
	}
	// With jitter, bytes still arrive in the order they were sent.
	check(t, p.Set(Latency(5*time.Millisecond, 5*time.Millisecond)))
	var want []byte
	for i := range 50 {
		b := []byte{byte('a' + i%26)}
		want = append(want, b...)
		_, err := c.Write(b)
		check(t, err)
		time.Sleep(time.Millisecond) // separate reads, so separate delays
	}
	got := make([]byte, len(want))
	check(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := io.ReadFull(c, got)
	check(t, err)
	if !bytes.Equal(got, want) {
		t.Fatalf("jittered echo %q, want %q", got, want)
	}
}

// TestProxyHoldReleasedByPass checks that held replies are delivered, not
// dropped, when the fault is lifted, and that the connection survives.
func TestProxyHoldReleasedByPass(t *testing.T) {
	t.Parallel()
	p := StartProxy(t, echoServer(t))
	c := dialT(t, p.Addr())
	check(t, p.Set(HoldReplies(time.Hour)))
	mustNotEcho(t, c, "held", 100*time.Millisecond)
	check(t, p.Set(Pass()))
	buf := make([]byte, 4)
	check(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "held" {
		t.Fatalf("after Pass: %q, %v", buf, err)
	}
	mustRoundTrip(t, c, "more")
	if s := p.Stats(); s.Reset != 0 {
		t.Fatalf("Reset = %d, want 0", s.Reset)
	}
}

func TestProxyBlackhole(t *testing.T) {
	t.Parallel()
	p := StartProxy(t, echoServer(t))
	c := dialT(t, p.Addr())
	mustRoundTrip(t, c, "PING\r\n")

	// A connection that lost nothing survives a blackhole.
	idle := dialT(t, p.Addr())
	mustRoundTrip(t, idle, "x")

	check(t, p.Set(Blackhole()))
	mustNotEcho(t, c, "PING\r\n", 100*time.Millisecond)
	late := dialT(t, p.Addr()) // new connections are accepted, then silent
	mustNotEcho(t, late, "PING\r\n", 100*time.Millisecond)
	pollUntil(t, "2 requests dropped, 1 forwarded", func() bool {
		s := p.Stats()
		return s.RequestsDropped == 2 && s.Requests == 1
	})

	// Back to pass: the connections with a gap are reset, the idle one
	// carries on, and new ones work.
	check(t, p.Set(Pass()))
	mustBeReset(t, c)
	mustBeReset(t, late)
	mustRoundTrip(t, idle, "y")
	mustRoundTrip(t, dialT(t, p.Addr()), "z")
	if s := p.Stats(); s.Reset != 2 {
		t.Fatalf("Reset = %d, want 2", s.Reset)
	}
}

// TestProxyDropRepliesQueued checks that switching to a dropping fault
// drops what an earlier delaying fault still holds.
func TestProxyDropRepliesQueued(t *testing.T) {
	t.Parallel()
	p := StartProxy(t, echoServer(t))
	c := dialT(t, p.Addr())
	check(t, p.Set(HoldReplies(time.Hour)))
	mustNotEcho(t, c, "+OK\r\n", 100*time.Millisecond)
	check(t, p.Set(DropReplies()))
	mustNotEcho(t, c, "+OK\r\n", 100*time.Millisecond)
	pollUntil(t, "both replies dropped", func() bool { return p.Stats().RepliesDropped == 2 })
	check(t, p.Set(Pass()))
	mustBeReset(t, c)
}

func TestProxyResetConns(t *testing.T) {
	t.Parallel()
	p := StartProxy(t, echoServer(t))
	c := dialT(t, p.Addr())
	mustRoundTrip(t, c, "x")

	check(t, p.Set(ResetConns()))
	mustBeReset(t, c)
	// The dial completes in the kernel; the connection is reset on accept.
	mustDialReset(t, p.Addr())

	check(t, p.Set(Pass()))
	mustRoundTrip(t, dialT(t, p.Addr()), "y")
	// Go redials once when the RST beats its check of the new connection
	// (selfConnect in package net), so count loosely.
	pollUntil(t, "all but the last connection reset", func() bool {
		s := p.Stats()
		return s.Reset >= 2 && s.Reset == s.Accepted-1 && s.Active == 1
	})
}

func TestProxyRefuse(t *testing.T) {
	t.Parallel()
	p := StartProxy(t, echoServer(t))
	other, err := p.Listen("other")
	check(t, err)
	c := dialT(t, p.Addr())
	mustRoundTrip(t, c, "x")

	check(t, p.SetFor("", Refuse()))
	check(t, p.SetFor("", Refuse())) // again: already refusing
	mustBeReset(t, c)
	// Refused, not timed out: the fastest of a few dials is well under
	// the dial timeout (a single one may be slow on a loaded machine).
	fastest := time.Hour
	for range 3 {
		begin := time.Now()
		_, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial while refusing: %v, want ECONNREFUSED", err)
		}
		fastest = min(fastest, time.Since(begin))
	}
	if fastest > 100*time.Millisecond {
		t.Fatalf("the fastest refused dial took %v", fastest)
	}
	mustRoundTrip(t, dialT(t, other), "other view") // unaffected

	// The same address works again.
	check(t, p.Set(Pass()))
	mustRoundTrip(t, dialT(t, p.Addr()), "y")

	// A view created while Set(Refuse()) is in force refuses too.
	check(t, p.Set(Refuse()))
	late, err := p.Listen("late")
	check(t, err)
	if _, err := net.DialTimeout("tcp", late, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a view made while refusing: %v", err)
	}
	check(t, p.SetFor("late", Pass()))
	mustRoundTrip(t, dialT(t, late), "z")
}

func TestProxyViews(t *testing.T) {
	t.Parallel()
	p := StartProxy(t, echoServer(t))
	a, err := p.Listen("A")
	check(t, err)
	b, err := p.Listen("B")
	check(t, err)
	if again, err := p.Listen("A"); err != nil || again != a || a == b || a == p.Addr() {
		t.Fatalf("addresses: A %q (again %q, %v), B %q, default %q", a, again, err, b, p.Addr())
	}
	ca, cb := dialT(t, a), dialT(t, b)

	check(t, p.SetFor("A", Blackhole()))
	if f, ok := p.FaultFor("A"); !ok || f != Blackhole() {
		t.Fatalf("FaultFor(A) = %v, %v", f, ok)
	}
	mustNotEcho(t, ca, pingArray, 100*time.Millisecond)
	mustRoundTrip(t, cb, pingArray)
	pollUntil(t, "A's request dropped", func() bool { return p.StatsFor("A").RequestsDropped == 1 })
	sa, sb := p.StatsFor("A"), p.StatsFor("B")
	if sa.Requests != 0 || sb.Requests != 1 || sb.Replies != 1 {
		t.Fatalf("StatsFor A %+v, B %+v", sa, sb)
	}
	if s := p.StatsFor("nobody"); s.Accepted != 0 || s.Commands == nil {
		t.Fatalf("StatsFor(nobody) = %+v", s)
	}
	if err := p.SetFor("nobody", Pass()); err == nil {
		t.Fatal("SetFor on a client without a view succeeded")
	}
	if _, ok := p.FaultFor("nobody"); ok {
		t.Fatal("FaultFor(nobody) found a view")
	}

	// Set overrides SetFor on every view.
	check(t, p.Set(Pass()))
	mustBeReset(t, ca) // it lost a request
	mustRoundTrip(t, dialT(t, a), pingArray)
	mustRoundTrip(t, cb, pingArray)
}

// TestProxyBackpressure holds more replies than a pipe queues: the proxy
// stops reading instead of growing without bound, and Pass delivers all of
// it intact.
func TestProxyBackpressure(t *testing.T) {
	t.Parallel()
	p := StartProxy(t, echoServer(t))
	c := dialT(t, p.Addr())
	check(t, p.Set(HoldReplies(time.Hour)))
	big := bytes.Repeat([]byte("0123456789abcdef"), 3*maxQueued/16)
	check(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	errc := make(chan error, 1)
	go func() { _, err := c.Write(big); errc <- err }()

	queued := func() (n int) {
		p.mu.Lock()
		defer p.mu.Unlock()
		for pc := range p.views[""].conns {
			n += pc.down.queued
		}
		return n
	}
	pollUntil(t, "the reply queue full", func() bool { return queued() >= maxQueued })
	for range 10 {
		// One read beyond the bound at most (read's buffer is 32 KiB).
		if n := queued(); n > maxQueued+32<<10 {
			t.Fatalf("%d bytes queued, bound %d", n, maxQueued)
		}
		time.Sleep(5 * time.Millisecond)
	}

	check(t, p.Set(Pass()))
	got := make([]byte, len(big))
	_, err := io.ReadFull(c, got)
	check(t, err)
	check(t, <-errc)
	if !bytes.Equal(got, big) {
		t.Fatal("held echo garbled")
	}
}

// TestProxyPassesResets checks that a target's RST reaches the client as
// an RST, which the proxy does not count as its own.
func TestProxyPassesResets(t *testing.T) {
	t.Parallel()
	ln, err := listenFresh() // see echoServer
	check(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Read(make([]byte, 1)) // wait for the client's first byte
			resetTCP(c.(*net.TCPConn))
		}
	})
	p := StartProxy(t, ln.Addr().String())
	c := dialT(t, p.Addr())
	_, err = c.Write([]byte("x"))
	check(t, err)
	mustBeReset(t, c)
	if s := p.Stats(); s.Reset != 0 {
		t.Fatalf("Reset = %d, want 0 (the target reset, not the proxy)", s.Reset)
	}
}

// TestProxyTargetDown checks that a client of a proxy whose target does not
// answer gets a reset.
func TestProxyTargetDown(t *testing.T) {
	t.Parallel()
	ln, err := listenFresh() // see echoServer
	check(t, err)
	target := ln.Addr().String()
	ln.Close()
	p := StartProxy(t, target)
	mustDialReset(t, p.Addr())
	pollUntil(t, "every connection reset", func() bool {
		s := p.Stats()
		return s.Reset >= 1 && s.Reset == s.Accepted && s.Active == 0
	})
}

func TestProxyClose(t *testing.T) {
	t.Parallel()
	p, err := NewProxy(echoServer(t))
	check(t, err)
	c := dialT(t, p.Addr())
	mustRoundTrip(t, c, "x")
	held := dialT(t, p.Addr())
	check(t, p.Set(HoldReplies(time.Hour)))
	_, err = held.Write([]byte("held"))
	check(t, err)
	check(t, p.SetFor("", Refuse())) // Close also releases a reserved port

	check(t, p.Close())
	check(t, p.Close()) // idempotent
	check(t, c.SetReadDeadline(time.Now().Add(time.Second)))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Close")
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("dial succeeded after Close")
	}
	if _, err := p.Listen("x"); !errors.Is(err, ErrProxyClosed) {
		t.Fatalf("Listen after Close: %v", err)
	}
	if err := p.Set(Pass()); !errors.Is(err, ErrProxyClosed) {
		t.Fatalf("Set after Close: %v", err)
	}
	if err := p.SetFor("", Pass()); !errors.Is(err, ErrProxyClosed) {
		t.Fatalf("SetFor after Close: %v", err)
	}
}

// proxyClient is a rueidis client through addr, with one connection and no
// retries, so that faults show in the result of each call.
func proxyClient(t *testing.T, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(proxyClientOption(addr))
	if err != nil {
		t.Fatalf("client for %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

func proxyClientOption(addr string) rueidis.ClientOption {
	return rueidis.ClientOption{
		InitAddress:       []string{addr},
		DisableCache:      true,
		ForceSingleClient: true,
		DisableRetry:      true,
		ClientSetInfo:     rueidis.DisableClientSetInfo,
		Dialer:            net.Dialer{Timeout: 2 * time.Second},
		ConnWriteTimeout:  5 * time.Second,
	}
}

// proxied starts a redis-server and a proxy to it.
func proxied(t *testing.T) (*Server, *Proxy) {
	t.Helper()
	s := Start(t)
	return s, StartProxy(t, s.Addr())
}

func TestProxyRedisPass(t *testing.T) {
	t.Parallel()
	s, p := proxied(t)
	c := proxyClient(t, p.Addr())
	check(t, do(c, time.Second, "SET", "k", "v").Error())
	if v, err := do(c, time.Second, "GET", "k").ToString(); err != nil || v != "v" {
		t.Fatalf("GET k = %q, %v", v, err)
	}
	if v, err := s.Do("GET", "k").ToString(); err != nil || v != "v" {
		t.Fatalf("admin GET k = %q, %v", v, err)
	}
	st := p.Stats()
	if st.Commands["SET"] != 1 || st.Commands["GET"] != 1 || st.Commands["HELLO"] != 1 || st.Accepted != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	if st.Replies != st.Requests {
		t.Fatalf("%d replies to %d requests", st.Replies, st.Requests)
	}
}

func TestProxyRedisLatency(t *testing.T) {
	t.Parallel()
	_, p := proxied(t)
	c := proxyClient(t, p.Addr())
	const d, jitter = 50 * time.Millisecond, 10 * time.Millisecond
	for _, tc := range []struct {
		f   Fault
		min time.Duration
	}{
		{Latency(d, jitter), 2 * (d - jitter)},
		{Latency(d, jitter).Only(Replies), d - jitter},
	} {
		check(t, p.Set(tc.f))
		begin := time.Now()
		check(t, do(c, 5*time.Second, "PING").Error())
		if got := time.Since(begin); got < tc.min {
			t.Errorf("%v: PING took %v, want at least %v", tc.f, got, tc.min)
		}
	}
}

func TestProxyRedisBlackhole(t *testing.T) {
	t.Parallel()
	_, p := proxied(t)
	c := proxyClient(t, p.Addr())
	check(t, do(c, time.Second, "PING").Error())
	check(t, p.Set(Blackhole()))
	begin := time.Now()
	if err := do(c, 50*time.Millisecond, "PING").Error(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("PING through a blackhole: %v, want a deadline error", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("PING with a 50ms timeout took %v", d)
	}
	check(t, p.Set(Pass()))
	pingEventually(t, c)
}

func TestProxyRedisDropReplies(t *testing.T) {
	t.Parallel()
	s, p := proxied(t)
	c := proxyClient(t, p.Addr())
	check(t, do(c, time.Second, "PING").Error())
	check(t, p.Set(DropReplies()))
	if err := do(c, 100*time.Millisecond, "SET", "k", "v").Error(); err == nil {
		t.Fatal("SET answered although replies are dropped")
	}
	// Applied, ack lost.
	pollUntil(t, "key set on the server", func() bool {
		v, err := s.Do("GET", "k").ToString()
		return err == nil && v == "v"
	})
	pollUntil(t, "the reply dropped", func() bool { return p.Stats().RepliesDropped >= 1 })
	if n := p.Stats().Commands["SET"]; n != 1 {
		t.Fatalf("SET forwarded %d times, want 1", n)
	}
	check(t, p.Set(Pass()))
	pingEventually(t, c)
	if v, err := do(c, time.Second, "GET", "k").ToString(); err != nil || v != "v" {
		t.Fatalf("GET k after Pass = %q, %v", v, err)
	}
}

func TestProxyRedisHoldReplies(t *testing.T) {
	t.Parallel()
	s, p := proxied(t)
	c := proxyClient(t, p.Addr())
	check(t, do(c, time.Second, "PING").Error())
	const d = 300 * time.Millisecond
	check(t, p.Set(HoldReplies(d)))
	begin := time.Now()
	type result struct {
		err     error
		elapsed time.Duration
	}
	done := make(chan result, 1)
	go func() {
		err := do(c, 5*time.Second, "SET", "k", "v").Error()
		done <- result{err, time.Since(begin)}
	}()
	pollUntil(t, "key set on the server", func() bool {
		v, err := s.Do("GET", "k").ToString()
		return err == nil && v == "v"
	})
	if applied := time.Since(begin); applied >= d {
		t.Errorf("SET applied after %v, want it applied before its reply (%v)", applied, d)
	}
	r := <-done
	if r.err != nil || r.elapsed < d {
		t.Fatalf("SET returned %v after %v, want success after at least %v", r.err, r.elapsed, d)
	}
}

func TestProxyRedisReset(t *testing.T) {
	t.Parallel()
	_, p := proxied(t)
	c := proxyClient(t, p.Addr())
	check(t, do(c, time.Second, "PING").Error())
	check(t, p.Set(ResetConns()))
	if err := do(c, time.Second, "PING").Error(); err == nil {
		t.Fatal("PING answered while connections are reset")
	}
	check(t, p.Set(Pass()))
	pingEventually(t, c)
	if st := p.Stats(); st.Reset < 1 {
		t.Fatalf("Stats = %+v, want a reset", st)
	}
}

func TestProxyRedisRefuse(t *testing.T) {
	t.Parallel()
	_, p := proxied(t)
	c := proxyClient(t, p.Addr())
	check(t, do(c, time.Second, "PING").Error())
	check(t, p.Set(Refuse()))
	fastest := time.Hour
	for range 3 {
		begin := time.Now()
		opt := proxyClientOption(p.Addr())
		opt.Dialer.Timeout = 5 * time.Second
		_, err := rueidis.NewClient(opt)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("NewClient while refusing: %v, want ECONNREFUSED", err)
		}
		fastest = min(fastest, time.Since(begin))
	}
	if fastest > 100*time.Millisecond {
		t.Fatalf("the fastest refused NewClient took %v", fastest)
	}
	if err := do(c, time.Second, "PING").Error(); err == nil {
		t.Fatal("PING answered while refusing")
	}
	check(t, p.Set(Pass()))
	pingEventually(t, c)
}

// TestProxyRedisRestart checks that a proxied client notices a killed
// server and reconnects through the proxy once it is back on its port.
func TestProxyRedisRestart(t *testing.T) {
	t.Parallel()
	s, p := proxied(t)
	c := proxyClient(t, p.Addr())
	check(t, do(c, time.Second, "PING").Error())
	check(t, s.Kill())
	if err := do(c, time.Second, "PING").Error(); err == nil {
		t.Fatal("PING answered after Kill")
	}
	check(t, s.Restart())
	pingEventually(t, c)
}

// TestProxyRedisViews gives two clients different views of one node, as
// RELIABILITY S8 needs ("proxy hides 4,5 from A").
func TestProxyRedisViews(t *testing.T) {
	t.Parallel()
	s, p := proxied(t)
	addrA, err := p.Listen("A")
	check(t, err)
	addrB, err := p.Listen("B")
	check(t, err)
	a, b := proxyClient(t, addrA), proxyClient(t, addrB)
	check(t, p.SetFor("A", Blackhole()))
	if err := do(a, 50*time.Millisecond, "SET", "k", "a").Error(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("A's SET: %v, want a deadline error", err)
	}
	check(t, do(b, time.Second, "SET", "k", "b").Error())
	if v, err := s.Do("GET", "k").ToString(); err != nil || v != "b" {
		t.Fatalf("admin GET k = %q, %v; want B's write only", v, err)
	}
	if sa, sb := p.StatsFor("A"), p.StatsFor("B"); sa.Commands["SET"] != 0 || sb.Commands["SET"] != 1 {
		t.Fatalf("SETs forwarded: A %d, B %d", sa.Commands["SET"], sb.Commands["SET"])
	}
	check(t, p.SetFor("A", Pass()))
	pingEventually(t, a)
}

// TestProxyRedisPipelineCounts checks the exact request count that
// RELIABILITY F6 relies on, for pipelined commands however they are split.
func TestProxyRedisPipelineCounts(t *testing.T) {
	t.Parallel()
	_, p := proxied(t)
	c := proxyClient(t, p.Addr())
	cmds := make(rueidis.Commands, 10)
	for i := range cmds {
		cmds[i] = c.B().Incr().Key("n").Build()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, r := range c.DoMulti(ctx, cmds...) {
		if n, err := r.AsInt64(); err != nil || n != int64(i+1) {
			t.Fatalf("INCR %d: %d, %v", i, n, err)
		}
	}
	if n := p.Stats().Commands["INCR"]; n != 10 {
		t.Fatalf("INCR forwarded %d times, want 10", n)
	}

	// A raw connection sends nothing of its own, so every count is exact:
	// ten commands written a byte at a time arrive in many pieces.
	raw, err := p.Listen("raw")
	check(t, err)
	conn := dialT(t, raw)
	check(t, conn.SetNoDelay(true))
	var pipeline []byte
	for range 10 {
		pipeline = append(pipeline, "*2\r\n$4\r\nINCR\r\n$1\r\nm\r\n"...)
	}
	for i := range pipeline {
		_, err := conn.Write(pipeline[i : i+1])
		check(t, err)
	}
	check(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	r := bufio.NewReader(conn)
	for i := range 10 {
		line, err := r.ReadString('\n')
		check(t, err)
		if want := ":" + strconv.Itoa(i+1) + "\r\n"; line != want {
			t.Fatalf("reply %d: %q, want %q", i, line, want)
		}
	}
	pollUntil(t, "ten replies counted", func() bool { return p.StatsFor("raw").Replies == 10 })
	if st := p.StatsFor("raw"); st.Requests != 10 || st.Commands["INCR"] != 10 || st.Replies != 10 {
		t.Fatalf("StatsFor(raw) = %+v, want 10 requests and 10 replies", st)
	}
}
