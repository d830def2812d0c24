package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// adminOptions configures the admin connection: one connection, no client
// tracking, no retries and no CLIENT SETINFO (which Redis 7.0 lacks), and a
// short dial and handshake timeout.
func (s *Server) adminOptions() rueidis.ClientOption {
	return rueidis.ClientOption{
		InitAddress:         []string{s.Addr()},
		Username:            s.cfg.user,
		Password:            s.cfg.pass,
		ClientName:          "redistest-admin",
		ClientSetInfo:       rueidis.DisableClientSetInfo,
		DisableCache:        true,
		DisableRetry:        true,
		ForceSingleClient:   true,
		PipelineMultiplex:   -1,
		ReadBufferEachConn:  64 << 10,
		WriteBufferEachConn: 64 << 10,
		Dialer:              net.Dialer{Timeout: time.Second},
	}
}

// Do runs an arbitrary command on the admin connection, for example
// Do("CLIENT", "PAUSE", "1500", "WRITE"), and waits at most 5 s for the
// answer (so a frozen server gives an error, not a hang). The result's
// Error() is [ErrNotRunning] after [Server.Kill] or [Server.Shutdown], and
// [ErrClosed] after [Server.Close].
func (s *Server) Do(args ...string) rueidis.RedisResult {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	return s.DoContext(ctx, args...)
}

// DoContext is [Server.Do] bounded by ctx instead, for commands that take
// long on purpose such as DEBUG SLEEP.
func (s *Server) DoContext(ctx context.Context, args ...string) rueidis.RedisResult {
	if len(args) == 0 {
		return rueidis.NewErrorResult(fmt.Errorf("redistest: Do needs a command"))
	}
	s.mu.Lock()
	c, closed := s.admin, s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return rueidis.NewErrorResult(ErrClosed)
	case c == nil:
		return rueidis.NewErrorResult(ErrNotRunning)
	}
	return c.Do(ctx, c.B().Arbitrary(args...).Build())
}

// ScriptFlush empties the script cache, so EVALSHA answers NOSCRIPT until a
// script is loaded again (as after a restart).
func (s *Server) ScriptFlush() error {
	return s.Do("SCRIPT", "FLUSH", "SYNC").Error()
}

// SetMaxMemory sets maxmemory (CONFIG SET). With the default noeviction
// policy, SetMaxMemory(1) makes writes that may grow memory fail with OOM;
// SetMaxMemory(0) removes the limit again.
func (s *Server) SetMaxMemory(bytes int64) error {
	return s.Do("CONFIG", "SET", "maxmemory", strconv.FormatInt(bytes, 10)).Error()
}

// FlushAll deletes every key (FLUSHALL SYNC).
func (s *Server) FlushAll() error {
	return s.Do("FLUSHALL", "SYNC").Error()
}

// ForceExpire emulates this server's clock jumping past the key's expiry:
// it sets PEXPIRE key 1 and returns once that millisecond has passed, so
// the key is gone for every later command. A missing key is left alone.
func (s *Server) ForceExpire(key string) error {
	if err := s.Do("PEXPIRE", key, "1").Error(); err != nil {
		return err
	}
	time.Sleep(2 * time.Millisecond)
	return nil
}

// Reset returns a server shared between tests to a clean state: it thaws it
// if frozen, restarts it if it is not running, deletes every key, removes
// the memory limit and ends any CLIENT PAUSE.
func (s *Server) Reset() error {
	s.mu.Lock()
	frozen, down := s.frozen, s.proc == nil || s.proc.exited()
	s.mu.Unlock()
	if frozen {
		if err := s.Thaw(); err != nil {
			return err
		}
	}
	if down {
		if err := s.Restart(); err != nil {
			return err
		}
	}
	for _, cmd := range [][]string{
		{"FLUSHALL", "SYNC"},
		{"CONFIG", "SET", "maxmemory", "0"},
		{"CLIENT", "UNPAUSE"},
	} {
		if err := s.Do(cmd...).Error(); err != nil {
			return fmt.Errorf("redistest: reset: %v: %w", cmd, err)
		}
	}
	return nil
}
