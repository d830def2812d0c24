package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Refuse must make dials fail with ECONNREFUSED, which only a port with no
// listener does, yet the view's address has to stay the same and stay ours:
// a closed port could be taken by any other socket on the host (another
// proxy's listener, a redis-server, an outgoing connection) before the view
// listens again. So every view listener has SO_REUSEPORT, and while refusing,
// a socket that is bound to the port but not listening reserves it.
// Connection attempts reach listeners only, so they are refused; binds by
// other sockets fail, and only the view's next listener (SO_REUSEPORT, same
// user) may join the reserving socket.

// Fresh view ports come from below the kernel's ephemeral range, where
// bind(0) never looks. redistest picks redis-server ports with bind(0)
// (freePort) and leaves a port unbound between picking it and exec, and
// between Kill and Restart; a proxy that took such a port would make the
// server's start or restart fail, or receive connections meant for it.
const (
	quietLow      = 20000 // below the ports of common services
	quietAttempts = 50
)

// portState is the state of a splitmix64 sequence that picks fresh ports.
var portState atomic.Uint64

func init() {
	portState.Store(uint64(time.Now().UnixNano()) ^ uint64(os.Getpid())<<32)
}

// listenFresh listens on a new loopback port. The kernel must not pick a
// port another socket has with SO_REUSEPORT, so the option is set only
// after the bind.
func listenFresh() (net.Listener, error) {
	var ln net.Listener
	var err error
	if hi := ephemeralLow(); hi > quietLow+1000 {
		for range quietAttempts {
			port := quietLow + int(splitmix(portState.Add(splitmixGamma))%uint64(hi-quietLow))
			ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if !errors.Is(err, syscall.EADDRINUSE) {
				break
			}
		}
	}
	if ln == nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return nil, err
	}
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err == nil {
		err = controlReusePort(rc)
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// ephemeralLow returns the first port of Linux's ephemeral range, or 0 if
// it is unknown.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return n
}

// stopListening closes ln so that the port stops accepting before it
// returns. Close alone does not ensure that: a redis-server being started
// concurrently holds a copy of every descriptor between fork and exec, and
// until the child execs the socket keeps listening, completing handshakes
// that end in a reset instead of a refusal. shutdown acts on the socket
// itself and stops a Linux listener at once.
func stopListening(ln net.Listener) {
	if rc, err := ln.(*net.TCPListener).SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			syscall.Shutdown(int(fd), syscall.SHUT_RD) // fails harmlessly elsewhere
		})
	}
	ln.Close()
}

// listenOn listens again on addr, a view's port that a reserving socket
// holds.
func listenOn(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return controlReusePort(rc)
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

func controlReusePort(rc syscall.RawConn) error {
	if soReusePort == 0 {
		return nil
	}
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set SO_REUSEPORT: %w", serr)
	}
	return nil
}

// reservePort binds a new TCP socket to addr (an IPv4 host:port) without
// listening, and returns its descriptor for syscall.Close.
func reservePort(addr string) (int, error) {
	if soReusePort == 0 {
		return -1, errors.New("cannot reserve a port without SO_REUSEPORT")
	}
	ta, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return -1, err
	}
	sa := &syscall.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())

	// Hold ForkLock, as package net does, so that a redis-server started
	// concurrently cannot inherit the descriptor (and the port with it)
	// before it is marked close-on-exec.
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, fmt.Errorf("reserve %s: socket: %w", addr, err)
	}
	// SO_REUSEPORT alone: with SO_REUSEADDR too, Linux would let any
	// socket with SO_REUSEADDR bind the port while nothing listens on it,
	// and a redis-server started on a port picked moments before (see
	// freePort) could then answer for the refusing view.
	err = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, soReusePort, 1)
	if err == nil {
		err = syscall.Bind(fd, sa)
	}
	if err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("reserve %s: %w", addr, err)
	}
	return fd, nil
}
