// Package redistest starts and controls real redis-server processes for tests.
//
// Each [Server] is one redis-server child on a free loopback port, with its
// own temporary directory and a private admin connection (separate from any
// client the code under test builds). Faults are injected through methods:
// [Server.Kill], [Server.Freeze] and [Server.Thaw], [Server.Restart] on the
// same port, [Server.Shutdown], [Server.ScriptFlush], [Server.SetMaxMemory],
// [Server.ForceExpire] (an emulated clock jump), and [Server.Do] for anything
// else.
//
// Processes are only ever signalled by the PID this package started, never by
// name. [Start] registers a cleanup that kills the server; servers made with
// [New] (for example in TestMain) must be closed by the caller.
//
// When redis-server is not on the PATH, [Start] skips the test, or fails it
// when the environment has LOCK_REQUIRE_REDIS=1 (as CI does).
//
// The package needs a Unix system (it sends SIGSTOP and SIGCONT).
package redistest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Binary is the name of the server program looked up on the PATH.
const Binary = "redis-server"

// RequireEnv is the environment variable that turns a missing redis-server
// from a skipped test into a failed one when it is set to "1".
const RequireEnv = "LOCK_REQUIRE_REDIS"

// ErrNotFound is returned by [New] when redis-server is not on the PATH.
var ErrNotFound = errors.New("redistest: " + Binary + " not found on PATH")

// ErrClosed is returned by methods of a [Server] after [Server.Close].
var ErrClosed = errors.New("redistest: server closed")

// ErrNotRunning is returned by methods that need a running process when the
// server has been killed or shut down and not restarted.
var ErrNotRunning = errors.New("redistest: server not running")

const skipMessage = Binary + " not found on PATH; install it (Debian: apt-get install redis-server) to run the real-Redis tests"

// Available reports whether redis-server is on the PATH.
func Available() bool {
	_, err := exec.LookPath(Binary)
	return err == nil
}

// Require skips the test when redis-server is not on the PATH, or fails it
// when the environment has LOCK_REQUIRE_REDIS=1. [Start] calls it; tests that
// share servers started in TestMain call it themselves.
func Require(t testing.TB) {
	t.Helper()
	if Available() {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatal(skipMessage + " (" + RequireEnv + "=1 makes this a failure)")
	}
	t.Skip(skipMessage)
}

// Option configures a [Server].
type Option func(*config)

type config struct {
	persistent bool
	tlsPort    bool
	args       []string
	user, pass string
}

// WithPersistence selects the persistent profile: an append-only file synced
// on every write (--appendonly yes --appendfsync always). Data then survives
// [Server.Shutdown] or [Server.Kill] followed by [Server.Restart].
func WithPersistence() Option {
	return func(c *config) { c.persistent = true }
}

// WithArgs appends redis-server command-line arguments, for example
// "--requirepass", "secret" or "--user", "app", "on", ">pw", "~app:*", "+get".
// They come after the package's own arguments, so they win on conflicts.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// WithAdminAuth sets the credentials of the admin connection (user "" is the
// default user). Use it when [WithArgs] sets --requirepass or ACL users.
func WithAdminAuth(user, password string) Option {
	return func(c *config) { c.user, c.pass = user, password }
}

// WithTLSPort makes the server also listen for TLS on a second free loopback
// port (--tls-port), reported by [Server.TLSAddr]. Certificate flags
// (--tls-cert-file and so on) are given with [WithArgs]. The admin
// connection keeps using the plaintext port.
func WithTLSPort() Option {
	return func(c *config) { c.tlsPort = true }
}

// Server is one redis-server process started by this package. Its methods
// are safe for concurrent use.
type Server struct {
	cfg     config
	dir     string
	ownDir  bool // dir was made by New and is removed by Close
	port    int
	tlsPort int

	// life serialises the methods that change the process (Kill, Restart,
	// Shutdown, Freeze, Thaw, Close); mu guards the fields below and is
	// never held across a wait.
	life   sync.Mutex
	mu     sync.Mutex
	proc   *process
	admin  rueidis.Client
	frozen bool
	closed bool
}

// Start starts a redis-server for the test and registers a cleanup that
// kills it. It skips or fails the test as [Require] does when redis-server
// is missing, and fails the test when the server cannot be started.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return StartN(t, 1, opts...)[0]
}

// StartN starts n independent redis-servers in parallel, as [Start] does.
func StartN(t testing.TB, n int, opts ...Option) []*Server {
	t.Helper()
	Require(t)
	servers := make([]*Server, n)
	errs := make([]error, n)
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = t.TempDir() // removed after the cleanup below has run
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { servers[i], errs[i] = start(dirs[i], false, opts) })
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, s := range servers {
			if s != nil {
				if err := s.Close(); err != nil {
					t.Errorf("redistest: cleanup of %s: %v", s.Addr(), err)
				}
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return servers
}

// New starts a redis-server that is not tied to a test, for use in TestMain.
// The caller must call [Server.Close], which also removes its directory. It
// returns [ErrNotFound] when redis-server is not on the PATH.
func New(opts ...Option) (*Server, error) {
	if !Available() {
		return nil, ErrNotFound
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, err
	}
	s, err := start(dir, true, opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

const startAttempts = 5

// start picks free ports and starts the process, trying new ports when the
// chosen ones turn out to be taken.
func start(dir string, ownDir bool, opts []Option) (*Server, error) {
	s := &Server{dir: dir, ownDir: ownDir}
	for _, o := range opts {
		o(&s.cfg)
	}
	var err error
	for range startAttempts {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		if s.cfg.tlsPort {
			if s.tlsPort, err = freePort(); err != nil {
				return nil, err
			}
		}
		var p *process
		var admin rueidis.Client
		p, admin, err = s.launch()
		if err == nil {
			s.proc, s.admin = p, admin
			return s, nil
		}
		if !errors.Is(err, errPortInUse) {
			break
		}
	}
	return nil, fmt.Errorf("redistest: start %s: %w", Binary, err)
}

// Addr returns the server's plaintext address, "127.0.0.1:port".
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Port returns the server's plaintext port. It stays the same across
// restarts.
func (s *Server) Port() int { return s.port }

// TLSAddr returns the TLS address, or "" unless [WithTLSPort] was given.
func (s *Server) TLSAddr() string {
	if s.tlsPort == 0 {
		return ""
	}
	return fmt.Sprintf("127.0.0.1:%d", s.tlsPort)
}

// Dir returns the server's working directory (where the AOF lives).
func (s *Server) Dir() string { return s.dir }

// PID returns the process ID of the running redis-server, or 0 when it has
// been killed or shut down (or has exited on its own).
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return 0
	}
	return s.proc.pid()
}

// Close kills the server (thawing it if frozen), waits for it to exit and
// closes the admin connection. A server made with [New] also loses its
// directory. Close is idempotent; after it every method returns [ErrClosed].
func (s *Server) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.stop()
	if s.ownDir {
		err = errors.Join(err, os.RemoveAll(s.dir))
	}
	return err
}

// adminTimeout bounds each admin command issued without a context.
const adminTimeout = 5 * time.Second
