package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"
)

const (
	readyTimeout   = 10 * time.Second // from exec to a PING answered
	exitTimeout    = 10 * time.Second // from SIGKILL or SHUTDOWN to the exit
	restartBackoff = 100 * time.Millisecond
	restartTries   = 20 // about 2 s for a port that is still held
)

// errPortInUse means the chosen port was taken: by another process between
// freePort and exec, or still held when restarting.
var errPortInUse = errors.New("port in use")

// process is one redis-server child. A goroutine waits for it from the
// start, so it never lingers as a zombie; done is closed when it has exited.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the exit status; read only after done is closed
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL, then SIGCONT, and waits for the exit. SIGKILL also ends
// a stopped process; SIGCONT afterwards only makes sure it is scheduled to
// die. Thawing first would let a frozen server serve queued commands before
// it dies, which a "killed while frozen" fault must not do.
func (p *process) kill() error {
	if p.exited() {
		return nil
	}
	// Go signals through a pidfd on Linux, so a process that has already
	// been reaped is never confused with a new one that reused its PID.
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	return p.wait()
}

func (p *process) wait() error {
	select {
	case <-p.done:
		return nil
	case <-time.After(exitTimeout):
		return fmt.Errorf("redistest: pid %d did not exit within %v", p.pid(), exitTimeout)
	}
}

// freePort asks the kernel for a free loopback port. Another process may take
// it before redis-server binds it; start then tries another one.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// args is the redis-server command line for this server's profile.
func (s *Server) args() []string {
	a := []string{
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(s.port),
		"--save", "",
		"--enable-debug-command", "local",
		"--dir", s.dir,
		"--protected-mode", "yes",
	}
	if s.cfg.persistent {
		a = append(a, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		a = append(a, "--appendonly", "no")
	}
	if s.tlsPort != 0 {
		a = append(a, "--tls-port", strconv.Itoa(s.tlsPort))
	}
	return append(a, s.cfg.args...)
}

// launch execs redis-server on s.port and waits until it answers PING. Its
// output is appended to redis.log in the server's directory, and the tail of
// this run's output is quoted when it fails to start.
func (s *Server) launch() (*process, rueidis.Client, error) {
	logPath := filepath.Join(s.dir, "redis.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	cmd := exec.Command(Binary, s.args()...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf // an *os.File: no copying goroutines
	cmd.SysProcAttr = SysProcAttr()
	err = cmd.Start()
	logf.Close() // the child has its own descriptor
	if err != nil {
		return nil, nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	admin, err := s.waitReady(p)
	if err == nil {
		return p, admin, nil
	}
	kerr := p.kill()
	out := logTail(logPath, logStart)
	if bytes.Contains(out, []byte("Address already in use")) {
		err = fmt.Errorf("%w: %v", errPortInUse, err)
	}
	return nil, nil, errors.Join(fmt.Errorf("%w (port %d, dir %s)\n%s", err, s.port, s.dir, out), kerr)
}

// waitReady polls until the process answers PING on s.port. It checks the
// answering server's process_id, so a server of someone else that grabbed
// the port is never taken for ours.
func (s *Server) waitReady(p *process) (rueidis.Client, error) {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("redis-server exited during startup: %v", p.err)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("redis-server did not answer PING within %v: %v", readyTimeout, last)
		}
		c, err := rueidis.NewClient(s.adminOptions())
		if err == nil {
			if err = checkReady(c, p.pid()); err == nil {
				return c, nil
			}
			c.Close()
			if errors.Is(err, errPortInUse) {
				return nil, err
			}
		}
		// A server that answers with an error other than LOADING is up
		// but refuses us (a wrong admin password, say): waiting won't help.
		if re, ok := rueidis.IsRedisErr(err); ok && !re.IsLoading() {
			return nil, fmt.Errorf("admin connection refused: %w", err)
		}
		last = err
		time.Sleep(5 * time.Millisecond)
	}
}

// checkReady sends PING (which answers LOADING while an AOF is read) and
// compares INFO's process_id with ours.
func checkReady(c rueidis.Client, pid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		return err
	}
	info, err := c.Do(ctx, c.B().Info().Section("server").Build()).ToString()
	if err != nil {
		return err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			if v != strconv.Itoa(pid) {
				return fmt.Errorf("%w: pid %s answers, not ours (%d)", errPortInUse, v, pid)
			}
			return nil
		}
	}
	return errors.New("no process_id in INFO server")
}

// logTail returns at most the last 2 KiB written to path after offset.
func logTail(path string, offset int64) []byte {
	b, err := os.ReadFile(path)
	if err != nil || offset > int64(len(b)) {
		return nil
	}
	b = b[offset:]
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return bytes.TrimSpace(b)
}

// stop kills the process, if any, and closes the admin connection. The
// caller holds s.life.
func (s *Server) stop() error {
	s.mu.Lock()
	p, admin := s.proc, s.admin
	s.proc, s.admin, s.frozen = nil, nil, false
	s.mu.Unlock()
	var err error
	if p != nil {
		err = p.kill() // first, so the admin connection breaks at once
	}
	if admin != nil {
		admin.Close()
	}
	return err
}

// running returns the live process; the caller holds s.life.
func (s *Server) running() (*process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.proc == nil || s.proc.exited() {
		return nil, ErrNotRunning
	}
	return s.proc, nil
}

// Kill sends SIGKILL (also to a frozen server) and waits for the exit. The
// data of the default profile is lost; the persistent profile keeps every
// acknowledged write. Killing a server that is not running does nothing.
func (s *Server) Kill() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.isClosed() {
		return ErrClosed
	}
	return s.stop()
}

// Freeze stops the process with SIGSTOP and returns once it is stopped:
// connections stay open but nothing is answered, and key TTLs keep running.
func (s *Server) Freeze() error {
	s.life.Lock()
	defer s.life.Unlock()
	p, err := s.running()
	if err != nil {
		return err
	}
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("redistest: freeze pid %d: %w", p.pid(), err)
	}
	s.mu.Lock()
	s.frozen = true
	s.mu.Unlock()
	return WaitStopped(p.pid(), p.done)
}

// Thaw resumes a frozen process with SIGCONT.
func (s *Server) Thaw() error {
	s.life.Lock()
	defer s.life.Unlock()
	p, err := s.running()
	if err != nil {
		return err
	}
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("redistest: thaw pid %d: %w", p.pid(), err)
	}
	s.mu.Lock()
	s.frozen = false
	s.mu.Unlock()
	return nil
}

// Restart starts redis-server again on the same port with the same profile,
// arguments and directory (so the persistent profile reloads its AOF), and
// waits until it answers PING. A server still running is killed first. It
// retries for about two seconds while the port is still held.
func (s *Server) Restart() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.isClosed() {
		return ErrClosed
	}
	if err := s.stop(); err != nil {
		return err
	}
	var err error
	for range restartTries {
		var p *process
		var admin rueidis.Client
		if p, admin, err = s.launch(); err == nil {
			s.mu.Lock()
			s.proc, s.admin = p, admin
			s.mu.Unlock()
			return nil
		}
		if !errors.Is(err, errPortInUse) {
			break
		}
		time.Sleep(restartBackoff)
	}
	return fmt.Errorf("redistest: restart on port %d: %w", s.port, err)
}

// Shutdown asks the server to exit cleanly with SHUTDOWN on the admin
// connection (the persistent profile fsyncs its AOF) and waits for the exit.
// A frozen server must be thawed first.
func (s *Server) Shutdown() error {
	s.life.Lock()
	defer s.life.Unlock()
	p, err := s.running()
	if err != nil {
		return err
	}
	s.mu.Lock()
	admin, frozen := s.admin, s.frozen
	s.mu.Unlock()
	if frozen {
		return errors.New("redistest: shutdown of a frozen server; Thaw it first")
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	// On success the server closes the connection instead of answering.
	err = admin.Do(ctx, admin.B().Shutdown().Build()).Error()
	if _, ok := rueidis.IsRedisErr(err); ok {
		return fmt.Errorf("redistest: shutdown: %w", err)
	}
	if werr := p.wait(); werr != nil {
		return errors.Join(werr, s.stop())
	}
	return s.stop()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
