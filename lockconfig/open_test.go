package lockconfig_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/lockconfig"
	"github.com/leaselock/lock/memory"
	"github.com/leaselock/lock/rueidislock"
)

// acquireRelease locks key in the namespace of m, checks that a second
// holder is refused, and releases.
func acquireRelease(t *testing.T, m *lock.Mutex, key, wantKey string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := m.AcquireNS(ctx, key)
	if err != nil {
		t.Fatalf("AcquireNS(%q): %v", key, err)
	}
	if l.Key() != wantKey {
		t.Errorf("Key() = %q, want %q", l.Key(), wantKey)
	}
	if _, err := m.TryAcquire(ctx, wantKey); !errors.Is(err, lock.ErrNotAcquired) {
		t.Errorf("TryAcquire of a held key: err = %v, want %v", err, lock.ErrNotAcquired)
	}
	if err := l.Release(ctx); err != nil {
		t.Errorf("Release: %v", err)
	}
}

// TestOpenMemory opens a Mutex from the seed's inMemory shape and locks.
func TestOpenMemory(t *testing.T) {
	for _, config := range []string{seedMemory, nested(seedMemory, "ignored")} {
		m, err := lockconfig.Open([]byte(config), "myApp")
		if err != nil {
			t.Fatalf("Open(%s): %v", config, err)
		}
		acquireRelease(t, m, "job", "myApp:job")

		// retry 0: Acquire makes one attempt, as the seed did.
		ctx := context.Background()
		l, err := m.Acquire(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := m.Acquire(ctx, "k"); !errors.Is(err, lock.ErrNotAcquired) {
			t.Errorf("second Acquire with retry 0: err = %v, want %v", err, lock.ErrNotAcquired)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("second Acquire with retry 0 took %v, want one attempt", d)
		}
		_ = l.Release(ctx)
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

// TestOpenNamespace: the argument wins, the config's namespace is used
// without one, and with neither AcquireNS says what is missing.
func TestOpenNamespace(t *testing.T) {
	for _, tc := range []struct {
		config, namespace, want string
	}{
		{`{"type":"inMemory","namespace":"cfg"}`, "arg", "arg:k"},
		{`{"type":"inMemory","namespace":"cfg"}`, "", "cfg:k"},
		{nested(`{"type":"inMemory"}`, "outer"), "", "outer:k"},
		{`{"type":"inMemory"}`, "arg", "arg:k"},
	} {
		m, err := lockconfig.Open([]byte(tc.config), tc.namespace)
		if err != nil {
			t.Fatal(err)
		}
		acquireRelease(t, m, "k", tc.want)
		m.Close()
	}
	m, err := lockconfig.Open([]byte(`{"type":"inMemory"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.AcquireNS(context.Background(), "k"); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("AcquireNS without a namespace: err = %v, want %v", err, lock.ErrInvalid)
	}
}

// TestOpenOptionOrder: the config overrides the options given to Open,
// and options given to a call override both.
func TestOpenOptionOrder(t *testing.T) {
	m, err := lockconfig.Open([]byte(`{"type":"inMemory","retry":0,"ttl":"3s","autoExtend":false}`), "ns",
		lock.WithRetry(-1), lock.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := m.Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	// autoExtend false: the lease has a deadline, set by the config's ttl.
	if dl, ok := l.Deadline(); !ok {
		t.Errorf("Deadline() = %v, %v; want a deadline, as the config turns renewal off", dl, ok)
	} else if left := time.Until(dl); left > 3*time.Second || left < 2*time.Second {
		t.Errorf("lease deadline in %v, want about the config's ttl of 3s", left)
	}
	// The config's retry 0 wins over Open's WithRetry(-1): one attempt.
	if _, err := m.Acquire(ctx, "k"); !errors.Is(err, lock.ErrNotAcquired) || ctx.Err() != nil {
		t.Errorf("Acquire of a held key: err = %v, want %v at once", err, lock.ErrNotAcquired)
	}
	// A call's own option wins over the config.
	short, cancel2 := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel2()
	if _, err := m.Acquire(short, "k", lock.WithRetry(-1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire with WithRetry(-1): err = %v, want it to wait until its context ends", err)
	}
}

// TestOpenEnv reads LOCK_CONFIG, nested or not, and says when it is unset.
func TestOpenEnv(t *testing.T) {
	t.Setenv(lockconfig.EnvVar, nested(seedMemory, "fromConfig"))
	m, err := lockconfig.OpenEnv("myApp")
	if err != nil {
		t.Fatal(err)
	}
	acquireRelease(t, m, "job", "myApp:job")
	m.Close()

	t.Setenv(lockconfig.EnvVar, `{"type":"inMemory","delay":-1}`)
	_, err = lockconfig.OpenEnv("myApp")
	if !errors.Is(err, lock.ErrInvalid) || !strings.HasPrefix(err.Error(), "LOCK_CONFIG: ") || !strings.Contains(err.Error(), "delay") {
		t.Errorf("OpenEnv with a bad delay: err = %v, want %v naming LOCK_CONFIG and delay", err, lock.ErrInvalid)
	}

	t.Setenv(lockconfig.EnvVar, "")
	if _, err := lockconfig.OpenEnv("myApp"); !errors.Is(err, lockconfig.ErrNotSet) {
		t.Errorf("OpenEnv with LOCK_CONFIG empty: err = %v, want %v", err, lockconfig.ErrNotSet)
	}
	os.Unsetenv(lockconfig.EnvVar) // t.Setenv restores it after the test
	if _, err := lockconfig.FromEnv(); !errors.Is(err, lockconfig.ErrNotSet) {
		t.Errorf("FromEnv with LOCK_CONFIG unset: err = %v, want %v", err, lockconfig.ErrNotSet)
	}
}

// TestBackendTypes checks what Backend builds, and that Dial succeeds
// while the nodes are down.
func TestBackendTypes(t *testing.T) {
	c, err := lockconfig.Parse([]byte(seedMemory))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Backend()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*memory.Backend); !ok {
		t.Errorf("Backend() of inMemory = %T, want *memory.Backend", b)
	}
	b.Close()

	// Ports 1, 2, 3 of the loopback have no Redis.
	c, err = lockconfig.Parse([]byte(`{"type":"redis","nodes":["127.0.0.1:1","redis://127.0.0.1:2",{"host":"127.0.0.1","port":3}],"nodeTimeout":"20ms"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err = c.Backend()
	if err != nil {
		t.Fatalf("Backend() with nodes down: %v", err)
	}
	rb, ok := b.(*rueidislock.Backend)
	if !ok || rb.Nodes() != 3 || rb.Quorum() != 2 {
		t.Errorf("Backend() = %T, want a *rueidislock.Backend of 3 nodes", b)
	}
	b.Close()
}

// TestBackendHandFilled checks a Config filled by hand, not by Parse.
func TestBackendHandFilled(t *testing.T) {
	retry, delay := 0, time.Duration(0)
	for _, tc := range []struct {
		c     lockconfig.Config
		field string
	}{
		{lockconfig.Config{}, "type"},
		{lockconfig.Config{Type: "memory"}, "type"},
		{lockconfig.Config{Type: lockconfig.TypeRedis}, "nodes"},
		{lockconfig.Config{Type: lockconfig.TypeMemory, Nodes: []lockconfig.Node{{Host: "h"}}}, "nodes[0]"},
		{lockconfig.Config{Type: lockconfig.TypeMemory, NodeTimeout: time.Second}, "nodeTimeout"},
		{lockconfig.Config{Type: lockconfig.TypeRedis, Nodes: []lockconfig.Node{{Host: "h"}, {Host: "h", Port: 6379}}}, "nodes[1]"},
		{lockconfig.Config{Type: lockconfig.TypeRedis, Nodes: []lockconfig.Node{{Host: ""}}}, "nodes[0].host"},
		{lockconfig.Config{Type: lockconfig.TypeRedis, Nodes: []lockconfig.Node{{Host: "h", Port: 70000}}}, "nodes[0].port"},
		{lockconfig.Config{Type: lockconfig.TypeRedis, Nodes: []lockconfig.Node{{Host: "h", DB: -1}}}, "nodes[0].db"},
		{lockconfig.Config{Type: lockconfig.TypeRedis, Nodes: []lockconfig.Node{{Host: "h", TLS: &lockconfig.TLS{CertFile: "c"}}}}, "nodes[0].tls.keyFile"},
		{lockconfig.Config{Type: lockconfig.TypeMemory, TTL: -time.Second}, "ttl"},
		{lockconfig.Config{Type: lockconfig.TypeMemory, Retry: &retry, Delay: &delay, Jitter: &delay}, ""},
		{lockconfig.Config{Type: lockconfig.TypeMemory, Delay: &delay, Jitter: &delay}, "lockOptions.retryDelay"},
	} {
		b, err := tc.c.Backend()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%v.Backend(): %v", tc.c, err)
			} else {
				b.Close()
			}
			continue
		}
		checkArgError(t, tc.c.String(), err, tc.field, "")
	}
	var nilConfig *lockconfig.Config
	if _, err := nilConfig.Backend(); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("nil Config: Backend() err = %v, want %v", err, lock.ErrInvalid)
	}
	if opts := nilConfig.Options(); opts != nil {
		t.Errorf("nil Config: Options() = %v, want none", opts)
	}
}

// TestBackendTLSFiles: a TLS file that is missing or wrong is an error
// naming its field, found before any connection is made.
func TestBackendTLSFiles(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsNode := func(tls string) string {
		return `{"lockConfig":{"type":"redis","nodes":["127.0.0.1:1",{"host":"127.0.0.1","port":2,"tls":` + tls + `}]}}`
	}
	for _, tc := range []struct {
		tls, field, text string
	}{
		{`{"caFile":"` + missing + `"}`, "lockConfig.nodes[1].tls.caFile", "no such file"},
		{`{"caFile":"` + notPEM + `"}`, "lockConfig.nodes[1].tls.caFile", "no PEM certificate"},
		{`{"caFile":"` + dir + `"}`, "lockConfig.nodes[1].tls.caFile", "cannot be read"},
		{`{"certFile":"` + missing + `","keyFile":"` + p.clientKey + `"}`, "lockConfig.nodes[1].tls.certFile", "no such file"},
		{`{"certFile":"` + p.clientCert + `","keyFile":"` + missing + `"}`, "lockConfig.nodes[1].tls.keyFile", "no such file"},
		{`{"certFile":"` + p.clientCert + `","keyFile":"` + p.serverKey + `"}`, "lockConfig.nodes[1].tls.certFile", "does not match"},
		{`{"certFile":"` + notPEM + `","keyFile":"` + p.clientKey + `"}`, "lockConfig.nodes[1].tls.certFile", "PEM"},
		{`{"caFile":"` + p.caFile + `","certFile":"` + p.clientCert + `","keyFile":"` + p.clientKey + `"}`, "", ""},
	} {
		config := tlsNode(tc.tls)
		c, err := lockconfig.Parse([]byte(config))
		if err != nil {
			t.Fatalf("Parse(%s): %v", config, err)
		}
		b, err := c.Backend()
		if tc.field == "" {
			if err != nil {
				t.Errorf("Backend() with good TLS files: %v", err)
			} else {
				b.Close()
			}
			continue
		}
		checkArgError(t, config, err, tc.field, tc.text)
		_, err = lockconfig.Open([]byte(config), "ns")
		checkArgError(t, config, err, tc.field, tc.text)
	}
}
