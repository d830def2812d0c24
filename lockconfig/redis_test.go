package lockconfig_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/lockconfig"
)

// seedRedisAt is the seed's redis shape for the node at host and port,
// with a TTL long enough for a slow test machine.
func seedRedisAt(host string, port int, extra string) string {
	return fmt.Sprintf(`{"type":"redis","connection":{"host":%q,"port":%d%s},`+
		`"lockOptions":{"driftFactor":0.01,"retryCount":0,"retryDelay":200,"retryJitter":100},"nodeTimeout":"500ms"}`,
		host, port, extra)
}

// TestOpenMiniredis opens from the seed's redis shape with host and port,
// locks, and finds the key on the server, in the database the config
// selects.
func TestOpenMiniredis(t *testing.T) {
	mr := miniredis.RunT(t)
	port, _ := strconv.Atoi(mr.Port())
	for _, tc := range []struct {
		name, extra string
		db          int
	}{
		{"seed", "", 0},
		{"db", `,"db":3`, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := lockconfig.Open([]byte(nested(seedRedisAt(mr.Host(), port, tc.extra), "myApp")), "")
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx := context.Background()
			l, err := m.AcquireNS(ctx, "job")
			if err != nil {
				t.Fatalf("AcquireNS: %v", err)
			}
			if !mr.DB(tc.db).Exists("myApp:job") {
				t.Errorf("the key myApp:job is not in database %d; keys: %v", tc.db, mr.DB(tc.db).Keys())
			}
			if err := l.Release(ctx); err != nil {
				t.Errorf("Release: %v", err)
			}
			if mr.DB(tc.db).Exists("myApp:job") {
				t.Error("the key myApp:job is still there after Release")
			}
		})
	}
}

// TestOpenMiniredisPassword logs in with the password of the config.
func TestOpenMiniredisPassword(t *testing.T) {
	mr := miniredis.RunT(t)
	mr.RequireUserAuth("app", secret)
	for _, config := range []string{
		fmt.Sprintf(`{"type":"redis","nodes":["redis://app:%s@%s"]}`, secret, mr.Addr()),
		fmt.Sprintf(`{"type":"redis","nodes":[{"url":"redis://app@%s","password":%q}]}`, mr.Addr(), secret),
		seedRedisAt(mr.Host(), mustAtoi(t, mr.Port()), `,"username":"app","password":"`+secret+`"`),
	} {
		m, err := lockconfig.Open([]byte(config), "ns")
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		acquireRelease(t, m, "k", "ns:k")
		m.Close()
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOpenRedis opens over three real redis-server nodes, written in the
// three ways a node may be, and finds the key on a majority of them.
func TestOpenRedis(t *testing.T) {
	servers := redistest.StartN(t, 3)
	config := fmt.Sprintf(`{"lockConfig":{"type":"redis","nodes":[%q,"redis://%s",{"host":"127.0.0.1","port":%d}],`+
		`"nodeTimeout":"500ms","ttl":"5s","lockOptions":{"retryCount":0}},"namespace":"myApp"}`,
		servers[0].Addr(), servers[1].Addr(), servers[2].Port())
	m, err := lockconfig.Open([]byte(config), "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	l, err := m.AcquireNS(ctx, "job")
	if err != nil {
		t.Fatalf("AcquireNS: %v", err)
	}
	holding := 0
	for _, s := range servers {
		if n, err := s.Do("EXISTS", "myApp:job").AsInt64(); err == nil && n == 1 {
			holding++
		}
	}
	if holding < 2 {
		t.Errorf("the key is on %d of 3 nodes, want a majority", holding)
	}
	if _, err := m.TryAcquire(ctx, "myApp:job"); !errors.Is(err, lock.ErrNotAcquired) {
		t.Errorf("TryAcquire of the held key: err = %v, want %v", err, lock.ErrNotAcquired)
	}
	if err := l.Release(ctx); err != nil {
		t.Errorf("Release: %v", err)
	}
}

// TestOpenRedisPassword logs in to a real node with the config's
// password, and a wrong one fails at Open, naming the node, without the
// password in the error.
func TestOpenRedisPassword(t *testing.T) {
	s := redistest.Start(t, redistest.WithArgs("--requirepass", secret), redistest.WithAdminAuth("", secret))
	good := seedRedisAt("127.0.0.1", s.Port(), `,"password":"`+secret+`"`)
	m, err := lockconfig.Open([]byte(good), "ns")
	if err != nil {
		t.Fatalf("Open with the right password: %v", err)
	}
	acquireRelease(t, m, "k", "ns:k")
	m.Close()

	wrong := strings.Replace(good, secret, "Wrong-7xQ2secret", 1)
	_, err = lockconfig.Open([]byte(nested(wrong, "ns")), "")
	t.Logf("Open with a wrong password: %v", err)
	noSecret(t, "Open with a wrong password", err)
	var ae *lock.ArgError
	if !errors.As(err, &ae) || ae.Arg != "lockConfig.connection" || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("Open with a wrong password: err = %v, want a *lock.ArgError naming lockConfig.connection with WRONGPASS", err)
	}
}

// TestOpenRedisTLS locks over TLS with the config's CA, client
// certificate and key files.
func TestOpenRedisTLS(t *testing.T) {
	p := newPKI(t)
	s := redistest.Start(t, redistest.WithTLSPort(), redistest.WithArgs(
		"--tls-cert-file", p.serverCert, "--tls-key-file", p.serverKey,
		"--tls-ca-cert-file", p.caFile, "--tls-auth-clients", "yes"))
	config := fmt.Sprintf(`{"type":"redis","nodes":[{"url":"rediss://%s","tls":{"caFile":%q,"certFile":%q,"keyFile":%q}}],"nodeTimeout":"1s"}`,
		s.TLSAddr(), p.caFile, p.clientCert, p.clientKey)
	m, err := lockconfig.Open([]byte(config), "tls")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := m.AcquireNS(ctx, "job")
	if err != nil {
		t.Fatalf("AcquireNS over TLS: %v", err)
	}
	if n, err := s.Do("EXISTS", "tls:job").AsInt64(); err != nil || n != 1 {
		t.Errorf("EXISTS tls:job = %d, %v; want 1", n, err)
	}
	if err := l.Release(ctx); err != nil {
		t.Errorf("Release: %v", err)
	}

	// Without the client certificate the node refuses: no lock.
	plain := strings.Replace(config, fmt.Sprintf(`,"certFile":%q,"keyFile":%q`, p.clientCert, p.clientKey), "", 1)
	m2, err := lockconfig.Open([]byte(plain), "tls")
	if err == nil {
		defer m2.Close()
		if _, err = m2.TryAcquire(ctx, "tls:other"); err == nil {
			t.Error("TryAcquire without a client certificate succeeded")
		}
	}
	t.Logf("without a client certificate: %v", err)
}
