package redistest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// maxQueued bounds the bytes a pipe holds back under a delaying fault.
// Beyond it the pipe stops reading, and TCP flow control pushes back on the
// sender, as a slow link would.
const maxQueued = 4 << 20

// proxyConn is one proxied connection: a client's connection to a view and
// the proxy's connection to the target. Each direction is a pipe with a
// reader and a writer goroutine, so either side can be delayed or dropped
// independently of the other.
type proxyConn struct {
	p              *Proxy
	v              *view
	client, server *net.TCPConn
	up, down       pipe // requests (client to server) and replies

	// Guarded by p.mu.
	closed bool
	eofs   int // directions whose end of stream has been forwarded

	done chan struct{} // closed by closeLocked
}

// pipe carries one direction. Its reader judges each chunk by the view's
// fault when it arrives and queues it; its writer delivers queued chunks
// when they are due.
type pipe struct {
	c        *proxyConn
	dir      Direction
	src, dst *net.TCPConn
	scan     respScanner // used only by the reader

	// Guarded by p.mu.
	queue  []chunk
	queued int  // bytes in queue
	torn   bool // bytes were dropped: what follows no longer lines up

	kick chan struct{} // wakes the writer: queue or fault changed
	room chan struct{} // wakes the reader: the queue shrank
}

// chunk is what one read returned, with the RESP frames that end in it.
type chunk struct {
	data   []byte
	eof    bool      // the sender closed its side; data is empty
	due    time.Time // zero: deliver at once
	frames int
	names  []string // command names of the frames, for requests
}

func newProxyConn(p *Proxy, v *view, client, server *net.TCPConn) *proxyConn {
	c := &proxyConn{p: p, v: v, client: client, server: server, done: make(chan struct{})}
	c.up = pipe{c: c, dir: Requests, src: client, dst: server, scan: respScanner{requests: true}}
	c.down = pipe{c: c, dir: Replies, src: server, dst: client}
	for _, pp := range []*pipe{&c.up, &c.down} {
		pp.kick = make(chan struct{}, 1)
		pp.room = make(chan struct{}, 1)
	}
	return c
}

// run proxies until the connection is closed and its goroutines have
// exited.
func (c *proxyConn) run() {
	var wg sync.WaitGroup
	for _, pp := range []*pipe{&c.up, &c.down} {
		// Readers exit on a read error, which closeLocked causes;
		// writers exit when done is closed or a write fails.
		wg.Go(pp.read)
		wg.Go(pp.write)
	}
	wg.Wait()
}

// closeLocked ends the connection, with a TCP RST to both peers if rst is
// set.
func (c *proxyConn) closeLocked(rst bool) {
	if c.closed {
		return
	}
	c.closed = true
	close(c.done)
	if rst {
		resetTCP(c.client)
		resetTCP(c.server)
		return
	}
	c.client.Close()
	c.server.Close()
}

// resetLocked ends the connection with an RST on account of a fault, and
// counts it.
func (c *proxyConn) resetLocked() {
	if !c.closed {
		c.v.stats.Reset++
	}
	c.closeLocked(true)
}

func (c *proxyConn) close(rst bool) {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	c.closeLocked(rst)
}

// refaultLocked applies a new fault to the connection; see [Proxy.Set].
func (c *proxyConn) refaultLocked(f Fault) {
	if f.conn != connOpen {
		c.resetLocked()
		return
	}
	for _, pp := range []*pipe{&c.up, &c.down} {
		a := f.action(pp.dir)
		switch {
		case a.drop:
			pp.dropQueueLocked()
		case pp.torn:
			c.resetLocked()
			return
		case !a.delays():
			for i := range pp.queue {
				pp.queue[i].due = time.Time{}
			}
		}
		signal(pp.kick)
	}
}

// resetTCP closes conn so that the peer gets an RST instead of a FIN.
func resetTCP(conn *net.TCPConn) {
	conn.SetLinger(0)
	conn.Close()
}

// signal wakes the goroutine waiting on ch, if any, without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// read reads the source until it fails or ends, and queues what it reads.
func (pp *pipe) read() {
	buf := make([]byte, 32<<10)
	for {
		n, err := pp.src.Read(buf)
		now := time.Now()
		if n > 0 {
			frames, names := pp.scan.feed(buf[:n])
			if !pp.push(chunk{data: bytes.Clone(buf[:n]), frames: frames, names: names}, now) {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			// The sender's FIN is forwarded in order, after its data.
			pp.push(chunk{eof: true}, now)
			return
		}
		if err != nil {
			// Pass a peer's RST on as one, so that the other peer sees
			// what it would see without the proxy.
			pp.c.close(errors.Is(err, syscall.ECONNRESET))
			return
		}
	}
}

// push judges ch, read at time at, by the view's current fault: it is
// dropped or queued with a due time. It reports false once the connection
// is closed.
func (pp *pipe) push(ch chunk, at time.Time) bool {
	p := pp.c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	for pp.queued > maxQueued && !pp.c.closed {
		p.mu.Unlock()
		select {
		case <-pp.room:
		case <-pp.c.done:
		}
		p.mu.Lock()
	}
	if pp.c.closed {
		return false
	}
	f := pp.c.v.fault
	if f.conn != connOpen {
		// Only a dial racing with the switch gets here; the switch
		// resets the connections it finds.
		pp.c.resetLocked()
		return false
	}
	a := f.action(pp.dir)
	switch {
	case a.drop:
		pp.queue = append(pp.queue, ch)
		pp.dropQueueLocked()
		return true
	case pp.torn:
		pp.c.resetLocked()
		return false
	case a.delays():
		ch.due = at.Add(p.jitterLocked(a))
	}
	pp.queue = append(pp.queue, ch)
	pp.queued += len(ch.data)
	signal(pp.kick)
	return true
}

// dropQueueLocked discards everything queued, counting the frames.
func (pp *pipe) dropQueueLocked() {
	if len(pp.queue) == 0 {
		return
	}
	st := &pp.c.v.stats
	for _, ch := range pp.queue {
		if pp.dir == Requests {
			st.RequestsDropped += int64(ch.frames)
		} else {
			st.RepliesDropped += int64(ch.frames)
		}
	}
	pp.queue, pp.queued, pp.torn = nil, 0, true
	signal(pp.room)
}

// write delivers queued chunks in order once each is due.
func (pp *pipe) write() {
	p := pp.c.p
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		p.mu.Lock()
		if len(pp.queue) == 0 {
			p.mu.Unlock()
			select {
			case <-pp.kick:
				continue
			case <-pp.c.done:
				return
			}
		}
		ch := pp.queue[0]
		if wait := time.Until(ch.due); !ch.due.IsZero() && wait > 0 {
			p.mu.Unlock()
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-pp.kick:
				timer.Stop() // the queue or the fault changed: look again
			case <-pp.c.done:
				return
			}
			continue
		}
		pp.queue[0] = chunk{}
		pp.queue = pp.queue[1:]
		pp.queued -= len(ch.data)
		if !ch.eof {
			// Count before writing: once written, the peer may answer,
			// and whoever sees the answer must find the request counted.
			pp.countLocked(ch)
		}
		p.mu.Unlock()
		signal(pp.room)

		if ch.eof {
			pp.dst.CloseWrite()
			p.mu.Lock()
			if pp.c.eofs++; pp.c.eofs == 2 {
				pp.c.closeLocked(false)
			}
			p.mu.Unlock()
			return
		}
		if _, err := pp.dst.Write(ch.data); err != nil {
			pp.c.close(false)
			return
		}
	}
}

// countLocked counts the frames of a chunk about to be forwarded.
func (pp *pipe) countLocked(ch chunk) {
	st := &pp.c.v.stats
	if pp.dir == Replies {
		st.Replies += int64(ch.frames)
		return
	}
	st.Requests += int64(ch.frames)
	if len(ch.names) > 0 && st.Commands == nil {
		st.Commands = map[string]int64{}
	}
	for _, name := range ch.names {
		st.Commands[name]++
	}
}
