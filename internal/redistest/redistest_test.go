package redistest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// client is what code under test would use: its own rueidis client, closed
// by the test's cleanup.
func client(t *testing.T, s *Server) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{s.Addr()},
		DisableCache:      true,
		ForceSingleClient: true,
		ClientSetInfo:     rueidis.DisableClientSetInfo,
		Dialer:            net.Dialer{Timeout: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatalf("client for %s: %v", s.Addr(), err)
	}
	t.Cleanup(c.Close)
	return c
}

func do(c rueidis.Client, timeout time.Duration, args ...string) rueidis.RedisResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Do(ctx, c.B().Arbitrary(args...).Build())
}

// pingEventually retries PING: a client whose connection broke may fail once
// before it reconnects.
func pingEventually(t *testing.T, c rueidis.Client) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = do(c, time.Second, "PING").Error(); err == nil {
			return
		}
	}
	t.Fatalf("PING never answered: %v", err)
}

func mustGet(t *testing.T, c rueidis.Client, key string) (string, bool) {
	t.Helper()
	v, err := do(c, time.Second, "GET", key).ToString()
	if rueidis.IsRedisNil(err) {
		return "", false
	}
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return v, true
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// gone reports whether no process has the PID any more (ours is reaped).
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestStartPing(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if want := fmt.Sprintf("127.0.0.1:%d", s.Port()); s.Addr() != want || s.Port() == 0 {
		t.Fatalf("Addr %q, Port %d", s.Addr(), s.Port())
	}
	c := client(t, s)
	if v, err := do(c, time.Second, "PING").ToString(); err != nil || v != "PONG" {
		t.Fatalf("PING: %q, %v", v, err)
	}
	info, err := s.Do("INFO", "server").ToString()
	check(t, err)
	if !strings.Contains(info, fmt.Sprintf("process_id:%d\r\n", s.PID())) {
		t.Fatalf("INFO does not name PID %d", s.PID())
	}
	for param, want := range map[string]string{
		"save": "", "appendonly": "no", "protected-mode": "yes", "bind": "127.0.0.1",
		"enable-debug-command": "local", "dir": s.Dir(),
	} {
		m, err := s.Do("CONFIG", "GET", param).AsStrMap()
		check(t, err)
		if got := m[param]; got != want {
			t.Errorf("CONFIG GET %s = %q, want %q", param, got, want)
		}
	}
	check(t, s.Do("DEBUG", "SLEEP", "0").Error()) // DEBUG is enabled for local clients
}

func TestKillRestartLosesData(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := client(t, s)
	port, pid := s.Port(), s.PID()
	check(t, do(c, time.Second, "SET", "k", "v").Error())

	check(t, s.Kill())
	if s.PID() != 0 || !gone(pid) {
		t.Fatalf("after Kill: PID() = %d, pid %d gone = %v", s.PID(), pid, gone(pid))
	}
	begin := time.Now()
	if err := do(c, time.Second, "PING").Error(); err == nil {
		t.Fatal("PING answered after Kill")
	}
	if d := time.Since(begin); d > 200*time.Millisecond {
		t.Fatalf("PING after Kill took %v to fail", d)
	}
	if !errors.Is(s.Do("PING").Error(), ErrNotRunning) {
		t.Fatalf("admin Do after Kill: %v", s.Do("PING").Error())
	}
	check(t, s.Kill()) // again: nothing to do

	check(t, s.Restart())
	if s.Port() != port || s.PID() == 0 || s.PID() == pid {
		t.Fatalf("after Restart: port %d (was %d), PID %d (was %d)", s.Port(), port, s.PID(), pid)
	}
	pingEventually(t, c)
	if _, ok := mustGet(t, c, "k"); ok {
		t.Fatal("default profile kept a key across Kill+Restart")
	}
	check(t, s.Do("PING").Error()) // the admin connection is back too
}

func TestShutdownRestart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []Option
		stop func(*Server) error
		keep bool
	}{
		{"default/shutdown", nil, (*Server).Shutdown, false},
		{"persistent/shutdown", []Option{WithPersistence()}, (*Server).Shutdown, true},
		{"persistent/kill", []Option{WithPersistence()}, (*Server).Kill, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, tc.opts...)
			c := client(t, s)
			pid := s.PID()
			check(t, do(c, time.Second, "SET", "k", "v").Error())
			check(t, tc.stop(s))
			if s.PID() != 0 || !gone(pid) {
				t.Fatalf("after stop: PID() = %d, pid %d gone = %v", s.PID(), pid, gone(pid))
			}
			check(t, s.Restart())
			pingEventually(t, c)
			v, ok := mustGet(t, c, "k")
			if ok != tc.keep || (ok && v != "v") {
				t.Fatalf("after restart GET k = %q, %v; want kept = %v", v, ok, tc.keep)
			}
		})
	}
}

func TestFreezeThaw(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := client(t, s)
	check(t, do(c, time.Second, "PING").Error())

	check(t, s.Freeze())
	begin := time.Now()
	if err := do(c, 200*time.Millisecond, "PING").Error(); err == nil {
		t.Fatal("frozen server answered PING")
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("PING with a 200ms timeout took %v", d)
	}
	check(t, s.Thaw())
	pingEventually(t, c)
}

func TestScriptFlush(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := client(t, s)
	sha, err := do(c, time.Second, "SCRIPT", "LOAD", "return 1").ToString()
	check(t, err)
	if n, err := do(c, time.Second, "EVALSHA", sha, "0").AsInt64(); err != nil || n != 1 {
		t.Fatalf("EVALSHA before flush: %d, %v", n, err)
	}
	check(t, s.ScriptFlush())
	err = do(c, time.Second, "EVALSHA", sha, "0").Error()
	if re, ok := rueidis.IsRedisErr(err); !ok || !re.IsNoScript() {
		t.Fatalf("EVALSHA after ScriptFlush: %v, want NOSCRIPT", err)
	}
}

func TestMaxMemory(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := client(t, s)
	check(t, s.SetMaxMemory(1))
	err := do(c, time.Second, "SET", "k", "v").Error()
	if err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("SET under maxmemory 1: %v, want OOM", err)
	}
	check(t, s.SetMaxMemory(0))
	check(t, do(c, time.Second, "SET", "k", "v").Error())
}

func TestFlushAllAndForceExpire(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := client(t, s)
	check(t, do(c, time.Second, "SET", "a", "1", "PX", "60000").Error())
	check(t, do(c, time.Second, "SET", "b", "2").Error())
	check(t, s.ForceExpire("a"))
	check(t, s.ForceExpire("missing"))
	if _, ok := mustGet(t, c, "a"); ok {
		t.Fatal("key a survived ForceExpire")
	}
	check(t, s.FlushAll())
	if _, ok := mustGet(t, c, "b"); ok {
		t.Fatal("key b survived FlushAll")
	}
}

// TestCleanup checks that cleanup kills and reaps exactly what was started,
// whatever state the test left it in.
func TestCleanup(t *testing.T) {
	t.Parallel()
	var pids []int
	t.Run("servers", func(t *testing.T) {
		ss := StartN(t, 4)
		seen := map[int]bool{}
		for _, s := range ss {
			if seen[s.Port()] {
				t.Fatalf("port %d used twice", s.Port())
			}
			seen[s.Port()] = true
			pids = append(pids, s.PID())
		}
		// ss[0] is left running.
		check(t, ss[1].Freeze())
		check(t, ss[2].Kill())
		check(t, ss[3].Close())
		check(t, ss[3].Close()) // idempotent
		if err := ss[3].Restart(); !errors.Is(err, ErrClosed) {
			t.Fatalf("Restart after Close: %v", err)
		}
	})
	for _, pid := range pids {
		if !gone(pid) {
			t.Errorf("pid %d still exists after cleanup", pid)
		}
	}
}

func TestReset(t *testing.T) {
	t.Parallel()
	s := Start(t)
	check(t, s.Do("SET", "k", "v").Error())
	check(t, s.SetMaxMemory(1))
	check(t, s.Freeze())
	check(t, s.Reset())
	if n, err := s.Do("DBSIZE").AsInt64(); err != nil || n != 0 {
		t.Fatalf("DBSIZE after Reset: %d, %v", n, err)
	}
	check(t, s.Do("SET", "k", "v").Error())
	check(t, s.Kill())
	check(t, s.Reset())
	check(t, s.Do("PING").Error())
}

func TestNewClose(t *testing.T) {
	t.Parallel()
	if !Available() {
		t.Skip(skipMessage)
	}
	s, err := New(WithArgs("--requirepass", "sesame"), WithAdminAuth("", "sesame"))
	check(t, err)
	pid, dir := s.PID(), s.Dir()
	check(t, s.Do("PING").Error())
	check(t, s.Close())
	if !gone(pid) {
		t.Fatalf("pid %d alive after Close", pid)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir %s after Close: %v", dir, err)
	}
	if !errors.Is(s.Do("PING").Error(), ErrClosed) {
		t.Fatal("Do after Close did not return ErrClosed")
	}
}

func TestBadConfigFailsFast(t *testing.T) {
	t.Parallel()
	if !Available() {
		t.Skip(skipMessage)
	}
	for _, tc := range []struct {
		opts []Option
		want string
	}{
		{[]Option{WithArgs("--no-such-option", "x")}, "no-such-option"},
		{[]Option{WithArgs("--requirepass", "sesame")}, "NOAUTH"},
		{[]Option{WithArgs("--requirepass", "sesame"), WithAdminAuth("", "wrong")}, "WRONGPASS"},
	} {
		begin := time.Now()
		_, err := New(tc.opts...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("New: %v, want an error naming %s", err, tc.want)
		}
		if d := time.Since(begin); d > 2*time.Second {
			t.Fatalf("%s took %v to fail", tc.want, d)
		}
	}
}

// TestPortTaken gives launch a port that another redis-server holds: the
// process_id check must notice, whichever of the two answers first.
func TestPortTaken(t *testing.T) {
	t.Parallel()
	other := Start(t)
	s := &Server{dir: t.TempDir(), port: other.Port()}
	_, _, err := s.launch()
	if !errors.Is(err, errPortInUse) {
		t.Fatalf("launch on a taken port: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s := Start(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = s.Do("PING").Error()
				_ = s.PID()
				_ = s.Addr()
				time.Sleep(time.Millisecond)
			}
		})
	}
	check(t, s.Freeze())
	check(t, s.Thaw())
	check(t, s.Kill())
	check(t, s.Restart())
	check(t, s.Restart()) // kills the running server first
	check(t, s.Shutdown())
	check(t, s.Restart())
	close(stop)
	wg.Wait()
	check(t, s.Do("PING").Error())
}

func TestTLSPort(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	s := Start(t, WithTLSPort(), WithArgs(
		"--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", certFile, "--tls-auth-clients", "no"))
	if s.TLSAddr() == "" || s.TLSAddr() == s.Addr() {
		t.Fatalf("TLSAddr %q", s.TLSAddr())
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", s.TLSAddr(),
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	check(t, err)
	defer conn.Close()
	check(t, conn.SetDeadline(time.Now().Add(2*time.Second)))
	_, err = conn.Write([]byte("PING\r\n"))
	check(t, err)
	line, err := bufio.NewReader(conn).ReadString('\n')
	check(t, err)
	if line != "+PONG\r\n" {
		t.Fatalf("PING over TLS: %q", line)
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	check(t, err)
	cert, err := x509.ParseCertificate(der)
	check(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	check(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	check(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	check(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// fakeTB records Skip and Fatal instead of acting on the real test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Skip(args ...any)      { f.skipped = fmt.Sprint(args...); runtime.Goexit() }
func (f *fakeTB) Fatal(args ...any)     { f.failed = fmt.Sprint(args...); runtime.Goexit() }
func (f *fakeTB) Fatalf(string, ...any) { f.failed = "fatalf"; runtime.Goexit() }

func TestMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // an empty directory: no redis-server
	for _, require := range []string{"", "1"} {
		t.Setenv(RequireEnv, require)
		if Available() {
			t.Fatal("Available with an empty PATH")
		}
		if _, err := New(); !errors.Is(err, ErrNotFound) {
			t.Fatalf("New: %v, want ErrNotFound", err)
		}
		f := &fakeTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Start(f)
		}()
		<-done
		switch {
		case require == "" && (f.skipped == "" || f.failed != ""):
			t.Errorf("without %s: skipped %q, failed %q; want a skip", RequireEnv, f.skipped, f.failed)
		case require == "1" && (f.failed == "" || f.skipped != ""):
			t.Errorf("with %s=1: skipped %q, failed %q; want a failure", RequireEnv, f.skipped, f.failed)
		case !strings.Contains(f.skipped+f.failed, "apt-get install redis-server"):
			t.Errorf("message %q does not say how to install", f.skipped+f.failed)
		}
	}
}
