package rueidislock_test

// Security tests of RELIABILITY.md §9 against real redis-server nodes: a
// least-privilege ACL user, wrong credentials, and TLS with certificates
// made here with crypto/x509.

import (
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
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/rueidislock"
)

// lockerCommands is the least a Redis 7.0 ACL user needs for every feature
// of the backend, found by removing each command in turn and reading ACL LOG:
//   - evalsha, eval: rueidis runs scripts with EVALSHA and falls back to
//     EVAL on NOSCRIPT (an empty script cache after a restart or flush); it
//     never sends SCRIPT LOAD for Exec;
//   - get, set, pttl, pexpire, del, publish: called inside the scripts,
//     where Redis 7 checks the user's rights too (pttl only on a refusal,
//     publish only on a release);
//   - rpush, lpos, lrem, lpop: the queue of waiters on a single node
//     (rpush and lpos when a waiter queues, lrem when it is served or
//     leaves, lpop on a release);
//   - hset, hget, hdel, time: hand-overs on a single node (hset and time
//     when a waiter registers, hget on a release, which reads the clock
//     too, and hdel when the registration is spent);
//   - subscribe, unsubscribe, ping: the notifier's connection (the PING
//     after SUBSCRIBE; without ping, unsubscribe the backend still works
//     but the denials fill ACL LOG, and channels stay subscribed).
//
// Not needed: hello and auth (always allowed), client|setname (Dial sets no
// name), client|setinfo (does not exist in 7.0, where naming it in ACL
// SETUSER is an error; rueidis ignores the reply of CLIENT SETINFO),
// client|tracking (Dial disables client-side caching), script|load.
var lockerCommands = []string{"-@all",
	"+evalsha", "+eval",
	"+get", "+set", "+pttl", "+pexpire", "+del", "+publish",
	"+rpush", "+lpos", "+lrem", "+lpop",
	"+hset", "+hget", "+hdel", "+time",
	"+subscribe", "+unsubscribe", "+ping",
}

const (
	lockerUser = "locker"
	lockerPass = "pw-Zq8sT3cret" // must never show in an error
	// notifyChannels is the ACL pattern of the release channels.
	notifyChannels = "&leaselock:released*"
)

// aclNodes starts n nodes with the user locker limited to patterns (key
// patterns ~... and channel patterns &...) and lockerCommands, and returns
// them with the redis:// URLs that log in as locker with password.
func aclNodes(t *testing.T, n int, password string, patterns ...string) ([]*redistest.Server, []string) {
	t.Helper()
	rule := append([]string{"--user", lockerUser, "on", ">" + lockerPass}, patterns...)
	servers := redistest.StartN(t, n, redistest.WithArgs(append(rule, lockerCommands...)...))
	urls := make([]string, n)
	for i, s := range servers {
		urls[i] = fmt.Sprintf("redis://%s:%s@%s", lockerUser, password, s.Addr())
	}
	return servers, urls
}

// aclDenials returns the entries of ACL LOG on s, one line each.
func aclDenials(t *testing.T, s *redistest.Server) []string {
	t.Helper()
	entries, err := s.Do("ACL", "LOG").ToArray()
	if err != nil {
		t.Fatalf("ACL LOG: %v", err)
	}
	var out []string
	for _, e := range entries {
		m, _ := e.AsMap()
		field := func(k string) string { v := m[k]; s, _ := v.ToString(); return s }
		out = append(out, fmt.Sprintf("%s %s %q (%s)", field("username"), field("reason"), field("object"), field("context")))
	}
	return out
}

// noSecret fails t if err's text shows the password.
func noSecret(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		if strings.Contains(text, lockerPass) || strings.Contains(text, "Wr0ng") {
			t.Errorf("%s: the error shows the password: %s", what, text)
		}
	}
}

// TestACLLeastPrivilege locks, renews, fences, waits and releases as the
// least-privilege user, with no denial in ACL LOG; a key outside the user's
// patterns fails with NOPERM in a NodeError, at once; the user cannot run
// the admin commands the harness uses.
func TestACLLeastPrivilege(t *testing.T) {
	servers, urls := aclNodes(t, 3, lockerPass, "~app:*", "~{app:*", notifyChannels)
	m := lock.New(dial(t, urls), lock.WithTTL(faultTTL))
	defer m.Close()
	ctx := context.Background()

	l, err := m.Acquire(ctx, "app:job")
	if err != nil {
		t.Fatalf("Acquire as %s: %v", lockerUser, err)
	}
	noSecret(t, "Acquire", err)
	first := leaseDeadline(l)
	if !pollUntil(faultTTL, func() bool { return leaseDeadline(l).After(first) }) {
		t.Errorf("no renewal within a TTL: %v", l.Err())
	}
	if err := l.Extend(ctx, faultTTL); err != nil {
		t.Errorf("Extend as %s: %v", lockerUser, err)
	}

	// A waiter wakes on the release notification (pub/sub under the
	// channel pattern), well before the holder's TTL or its 5 s delay.
	type result struct {
		l   *lock.Lease
		err error
		at  time.Time
	}
	got := make(chan result, 1)
	go func() {
		l, err := m.Acquire(ctx, "app:job", lock.WithDelay(5*time.Second), lock.WithJitter(0))
		got <- result{l, err, time.Now()}
	}()
	channel := "leaselock:released\x00app:job"
	if !pollUntil(2*time.Second, func() bool {
		subs := 0
		for _, s := range servers {
			if v, err := s.Do("PUBSUB", "NUMSUB", channel).ToArray(); err == nil && len(v) == 2 {
				n, _ := v[1].AsInt64()
				subs += int(n)
			}
		}
		return subs == len(servers)
	}) {
		t.Fatal("the waiter did not subscribe to the release channel on every node")
	}
	released := time.Now()
	if err := l.Release(ctx); err != nil {
		t.Errorf("Release as %s: %v", lockerUser, err)
	}
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("waiter: %v", r.err)
		}
		t.Logf("waiter woke %v after the release", r.at.Sub(released))
		if d := r.at.Sub(released); d > 100*time.Millisecond {
			t.Errorf("waiter got the key %v after the release: not woken by the notification", d)
		}
		if err := r.l.Release(ctx); err != nil {
			t.Errorf("Release of the waiter's lease: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("waiter not served 3 s after the release")
	}

	// The second round of fencing (a majority knows a larger counter).
	ahead := time.Now().Add(time.Hour).UnixMicro()
	for _, s := range servers[1:] {
		if err := s.Do("SET", "app:{fenced}\x00fence", fmt.Sprint(ahead)).Error(); err != nil {
			t.Fatal(err)
		}
	}
	l, err = m.Acquire(ctx, "app:{fenced}")
	if err != nil {
		t.Fatalf("Acquire with the fencing fallback: %v", err)
	}
	if l.Token() != uint64(ahead)+1 {
		t.Errorf("token %d, want %d", l.Token(), ahead+1)
	}
	l.Release(ctx)

	// On a single node, waiters queue (the list beside the key, under
	// the key's pattern) and a release hands the key over to the first of
	// them.
	solo := lock.New(dial(t, urls[:1]), lock.WithTTL(faultTTL))
	defer solo.Close()
	if l, err = solo.Acquire(ctx, "app:solo"); err != nil {
		t.Fatalf("Acquire on one node as %s: %v", lockerUser, err)
	}
	go func() {
		l, err := solo.Acquire(ctx, "app:solo", lock.WithDelay(5*time.Second), lock.WithJitter(0))
		if err == nil {
			l.Release(ctx)
		}
		got <- result{l, err, time.Now()}
	}()
	waitQueued(t, servers[0], "app:solo", 1)
	released = time.Now()
	l.Release(ctx)
	if r := <-got; r.err != nil || r.at.Sub(released) > 100*time.Millisecond {
		t.Errorf("queued waiter: %v, %v after the release", r.err, r.at.Sub(released))
	}

	// A key outside ~app:* is refused by the server, at once.
	start := time.Now()
	_, err = m.TryAcquire(ctx, "other:job")
	if !errors.Is(err, lock.ErrNotAcquired) || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("TryAcquire of a key outside the user's patterns = %v, want %v with NOPERM", err, lock.ErrNotAcquired)
	}
	var ne *rueidislock.NodeError
	if !errors.As(err, &ne) {
		t.Errorf("no NodeError in %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("TryAcquire of a forbidden key took %v", d)
	}
	noSecret(t, "TryAcquire of a forbidden key", err)

	// Only that refusal is in ACL LOG, and the eviction check's CONFIG
	// GET at Dial, which a user without the right skips (see policy.go):
	// the user had every right it used.
	for i, s := range servers {
		for _, d := range aclDenials(t, s) {
			if !strings.Contains(d, "other:job") && !strings.Contains(d, `"config|get"`) {
				t.Errorf("node %d: ACL LOG: %s", i, d)
			}
		}
	}

	// The harness's admin commands are not the library user's.
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{servers[0].Addr()}, Username: lockerUser, Password: lockerPass,
		DisableCache: true, ForceSingleClient: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, cmd := range [][]string{{"FLUSHALL"}, {"SCRIPT", "FLUSH"}, {"CONFIG", "SET", "maxmemory", "1"}, {"KEYS", "*"}} {
		err := c.Do(ctx, c.B().Arbitrary(cmd...).Build()).Error()
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("%s as %s: %v, want NOPERM", strings.Join(cmd, " "), lockerUser, err)
		}
	}
}

// TestACLNamespacePattern: a user limited to its namespace, ~app:* as
// RELIABILITY.md §5 and §9 write it, can lock the keys of that namespace.
func TestACLNamespacePattern(t *testing.T) {
	_, urls := aclNodes(t, 3, lockerPass, "~app:*", notifyChannels)
	m := lock.New(dial(t, urls), lock.WithTTL(faultTTL))
	defer m.Close()
	ctx := context.Background()
	l, err := m.TryAcquire(ctx, "app:job")
	if err != nil && strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("TryAcquire(app:job) as a user with ~app:* = %v: the fencing counter must fall under the key's own pattern", err)
	}
	if err != nil {
		t.Fatalf("TryAcquire as a user with ~app:*: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Errorf("Release: %v", err)
	}
}

// TestACLWrongPassword: wrong credentials fail fast with a clear error (the
// server's WRONGPASS), not an endless retry, and the password never shows.
func TestACLWrongPassword(t *testing.T) {
	_, urls := aclNodes(t, 3, "Wr0ng-"+lockerPass, "~*", notifyChannels)
	ctx := context.Background()

	start := time.Now()
	b, err := rueidislock.Dial(urls, rueidislock.WithNodeTimeout(faultNodeTimeout), rueidislock.WithClientOption(pipelined))
	t.Logf("Dial with a wrong password: %v after %v", err, time.Since(start))
	noSecret(t, "Dial", err)
	if err != nil {
		if !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("Dial with a wrong password = %v, want the server's WRONGPASS", err)
		}
		return
	}
	// Dial is documented to succeed while nodes are down; a node that is up
	// and refuses the credentials is another matter (§9: a typed error from
	// Dial).
	t.Error("Dial succeeded although every node answered WRONGPASS")
	m := lock.New(b, lock.WithTTL(faultTTL))
	defer m.Close()

	start = time.Now()
	_, err = m.TryAcquire(ctx, "k")
	if d := time.Since(start); d > time.Second {
		t.Errorf("TryAcquire with a wrong password took %v", d)
	}
	if !errors.Is(err, lock.ErrNotAcquired) || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("TryAcquire with a wrong password = %v, want %v with WRONGPASS", err, lock.ErrNotAcquired)
	}
	var ne *rueidislock.NodeError
	if !errors.As(err, &ne) {
		t.Errorf("no NodeError in %v", err)
	}
	noSecret(t, "TryAcquire", err)

	start = time.Now()
	_, err = m.Acquire(ctx, "k", lock.WithRetry(2), lock.WithDelay(10*time.Millisecond))
	if d := time.Since(start); d > time.Second {
		t.Errorf("Acquire with 2 retries and a wrong password took %v", d)
	}
	if !errors.Is(err, lock.ErrNotAcquired) || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("Acquire with a wrong password = %v, want %v with WRONGPASS", err, lock.ErrNotAcquired)
	}
	noSecret(t, "Acquire with retries", err)

	// With the default options (retry until ctx is done), a refusal no
	// retry can cure should still end Acquire at once.
	const patience = 2 * time.Second
	actx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	start = time.Now()
	_, err = m.Acquire(actx, "k")
	elapsed := time.Since(start)
	t.Logf("Acquire with default retries and a wrong password: %v after %v", err, elapsed)
	noSecret(t, "Acquire with default retries", err)
	if !errors.Is(err, lock.ErrNotAcquired) || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("Acquire with a wrong password = %v, want %v with WRONGPASS", err, lock.ErrNotAcquired)
	}
	if elapsed >= patience {
		t.Errorf("Acquire with the default retry retried WRONGPASS until its context ended (%v)", elapsed)
	}
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM files in a temporary directory.
type testPKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
	client                    tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lock test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	}
	p := &testPKI{
		caFile: filepath.Join(dir, "ca.crt"), certFile: filepath.Join(dir, "server.crt"), keyFile: filepath.Join(dir, "server.key"),
		pool: x509.NewCertPool(),
	}
	p.pool.AddCert(caCert)
	serverCert, serverKey := leaf(2, x509.ExtKeyUsageServerAuth)
	for file, data := range map[string][]byte{
		p.caFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		p.certFile: serverCert, p.keyFile: serverKey,
	} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	clientCert, clientKey := leaf(3, x509.ExtKeyUsageClientAuth)
	if p.client, err = tls.X509KeyPair(clientCert, clientKey); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsNodes starts n nodes that also listen for TLS with p's certificate,
// and returns them with their rediss:// URLs.
func tlsNodes(t *testing.T, n int, p *testPKI, authClients string) ([]*redistest.Server, []string) {
	t.Helper()
	servers := redistest.StartN(t, n, redistest.WithTLSPort(), redistest.WithArgs(
		"--tls-cert-file", p.certFile, "--tls-key-file", p.keyFile,
		"--tls-ca-cert-file", p.caFile, "--tls-auth-clients", authClients))
	urls := make([]string, n)
	for i, s := range servers {
		urls[i] = "rediss://" + s.TLSAddr()
	}
	return servers, urls
}

// tlsNodeTimeout leaves room for a TLS handshake under -race on a busy host.
const tlsNodeTimeout = 250 * time.Millisecond

// dialTLS dials addrs with f applied to each node's TLS configuration.
func dialTLS(t *testing.T, addrs []string, f func(*tls.Config)) *rueidislock.Backend {
	t.Helper()
	return dial(t, addrs, rueidislock.WithNodeTimeout(tlsNodeTimeout), rueidislock.WithClientOption(func(o *rueidis.ClientOption) {
		pipelined(o)
		if o.TLSConfig != nil && f != nil {
			f(o.TLSConfig)
		}
	}))
}

// failsFast checks that TryAcquire on m fails within a second with
// ErrNotAcquired and an error that errors.As finds as target.
func failsFast(t *testing.T, what string, m *lock.Mutex, target any) {
	t.Helper()
	start := time.Now()
	_, err := m.TryAcquire(context.Background(), "tls:k")
	elapsed := time.Since(start)
	t.Logf("%s: TryAcquire failed in %v: %v", what, elapsed, err)
	if !errors.Is(err, lock.ErrNotAcquired) {
		t.Errorf("%s: TryAcquire = %v, want %v", what, err, lock.ErrNotAcquired)
	}
	if target != nil && !errors.As(err, target) {
		t.Errorf("%s: TryAcquire = %v, want a %T in it", what, err, target)
	}
	if elapsed > time.Second {
		t.Errorf("%s: TryAcquire took %v, want a fast failure", what, elapsed)
	}
}

// TestTLS locks over rediss:// with a CA-verified server certificate, and
// refuses a server signed by another CA, a name the certificate does not
// cover, plaintext to the TLS port, and a missing client certificate where
// one is required.
func TestTLS(t *testing.T) {
	p := newPKI(t)
	servers, urls := tlsNodes(t, 3, p, "no")
	ctx := context.Background()

	t.Run("Verified", func(t *testing.T) {
		var seen []*tls.Config // as rediss:// made them
		b := dialTLS(t, urls, func(c *tls.Config) {
			seen = append(seen, c.Clone())
			c.RootCAs = p.pool
		})
		for i, c := range seen {
			if c.InsecureSkipVerify || (c.MinVersion != 0 && c.MinVersion < tls.VersionTLS12) || c.ServerName != "127.0.0.1" {
				t.Errorf("node %d: rediss:// gave InsecureSkipVerify %v, MinVersion %#x, ServerName %q; want false, >= TLS 1.2, 127.0.0.1",
					i, c.InsecureSkipVerify, c.MinVersion, c.ServerName)
			}
		}
		m := lock.New(b, lock.WithTTL(faultTTL))
		defer m.Close()
		l, err := m.Acquire(ctx, "tls:job")
		if err != nil {
			t.Fatalf("Acquire over TLS: %v", err)
		}
		if err := l.Extend(ctx, faultTTL); err != nil {
			t.Errorf("Extend over TLS: %v", err)
		}
		// A waiter is woken over TLS too.
		got := make(chan error, 1)
		go func() {
			// A TTL far longer than the wait for the key to go below, so
			// that only a deletion can make it go.
			l, err := m.Acquire(ctx, "tls:job", lock.WithTTL(time.Minute), lock.WithDelay(5*time.Second), lock.WithJitter(0))
			if err == nil {
				err = l.Release(ctx)
			}
			got <- err
		}()
		if !pollUntil(2*time.Second, func() bool {
			v, err := servers[0].Do("PUBSUB", "NUMSUB", "leaselock:released\x00tls:job").ToArray()
			n := int64(0)
			if err == nil && len(v) == 2 {
				n, _ = v[1].AsInt64()
			}
			return n > 0
		}) {
			t.Fatal("the waiter did not subscribe")
		}
		if err := l.Release(ctx); err != nil {
			t.Errorf("Release over TLS: %v", err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Errorf("waiter over TLS: %v", err)
			}
		case <-time.After(time.Second):
			t.Error("waiter over TLS not served within a second of the release")
		}
		// The key is gone from the TLS nodes: on a node whose grant came
		// after the majority's, within the undo of that late grant (a
		// node timeout, and a release's: 1.25s), not necessarily by the
		// time Release returned.
		for i, s := range servers {
			if !gone(s, "tls:job", 2*time.Second) {
				t.Errorf("node %d keeps the key", i)
			}
		}
	})

	t.Run("WrongCA", func(t *testing.T) {
		other := newPKI(t)
		m := lock.New(dialTLS(t, urls, func(c *tls.Config) { c.RootCAs = other.pool }))
		defer m.Close()
		failsFast(t, "server certificate from another CA", m, new(x509.UnknownAuthorityError))
	})

	t.Run("NameMismatch", func(t *testing.T) {
		m := lock.New(dialTLS(t, urls, func(c *tls.Config) {
			c.RootCAs = p.pool
			c.ServerName = "redis.invalid"
		}))
		defer m.Close()
		failsFast(t, "certificate not valid for the name", m, new(x509.HostnameError))
	})

	t.Run("PlaintextToTLSPort", func(t *testing.T) {
		plain := make([]string, len(servers))
		for i, s := range servers {
			plain[i] = s.TLSAddr()
		}
		m := lock.New(dial(t, plain, rueidislock.WithNodeTimeout(tlsNodeTimeout)))
		defer m.Close()
		failsFast(t, "plaintext to the TLS port", m, nil)
	})

	t.Run("ClientCertificate", func(t *testing.T) {
		_, urls := tlsNodes(t, 1, p, "yes")
		m := lock.New(dialTLS(t, urls, func(c *tls.Config) { c.RootCAs = p.pool }))
		defer m.Close()
		failsFast(t, "no client certificate under tls-auth-clients yes", m, nil)

		m2 := lock.New(dialTLS(t, urls, func(c *tls.Config) {
			c.RootCAs = p.pool
			c.Certificates = []tls.Certificate{p.client}
		}))
		defer m2.Close()
		l, err := m2.Acquire(ctx, "tls:mutual")
		if err != nil {
			t.Fatalf("Acquire with a client certificate: %v", err)
		}
		if err := l.Release(ctx); err != nil {
			t.Errorf("Release: %v", err)
		}
	})
}
