package locktest

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/memory"
)

func TestMain(m *testing.M) {
	if os.Getenv(mutantEnv) != "" {
		// A broken backend may leak on purpose; only its subtests matter.
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

// mutantEnv names the broken backend that TestMutant runs the suite on, in
// a child process started by TestMutants.
const mutantEnv = "LOCKTEST_MUTANT"

// A mutant is a backend broken on purpose, each in one way, and the
// subtests of Run that must catch it: the negative controls of the suite.
type mutant struct {
	name  string
	wrap  func(b *memory.Backend) lock.Backend
	fails []string // subtests of Run that must fail
	opts  []Option
}

var mutants = []mutant{
	{
		name:  "no-exclusion", // grants every attempt
		wrap:  func(*memory.Backend) lock.Backend { return new(grantAll) },
		fails: []string{"Exclusion/OneKey", "Exclusion/FewKeys", "TryAcquire", "Namespace"},
	},
	{
		name:  "decreasing-tokens",
		wrap:  func(b *memory.Backend) lock.Backend { return &notTokens{b} },
		fails: []string{"Exclusion/OneKey", "HandOff", "Fencing"},
	},
	{
		name: "release-any-holder", // Release ignores the token
		wrap: func(b *memory.Backend) lock.Backend {
			return &releaseAny{Backend: b, w: b, last: make(map[string]uint64)}
		},
		fails: []string{"Expiry", "Fencing"},
	},
	{
		name:  "no-wake", // waiters only poll
		wrap:  func(b *memory.Backend) lock.Backend { return struct{ lock.Backend }{b} },
		fails: []string{"HandOff"},
		opts:  []Option{WithTTL(50 * time.Millisecond)},
	},
	{
		name:  "early-expiry", // keys expire at half their TTL
		wrap:  func(b *memory.Backend) lock.Backend { return &scaleTTL{b, 1, 2} },
		fails: []string{"Expiry"},
	},
	{
		name:  "no-expiry", // keys of leases that do not renew never expire
		wrap:  func(b *memory.Backend) lock.Backend { return &scaleTTL{b, 1000, 1} },
		fails: []string{"Expiry"},
		opts:  []Option{WithTTL(50 * time.Millisecond)},
	},
	{
		name:  "deaf-waiters", // Wait ignores its context
		wrap:  func(b *memory.Backend) lock.Backend { return &deafWait{b} },
		fails: []string{"CancelWaiter"},
		opts:  []Option{WithTTL(50 * time.Millisecond)},
	},
	{
		name:  "close-keeps-waiters", // Close does not wake waiters
		wrap:  func(b *memory.Backend) lock.Backend { return &lazyClose{b} },
		fails: []string{"Close"},
		opts:  []Option{WithTTL(50 * time.Millisecond)},
	},
	{
		name:  "goroutine-per-attempt", // leaks until Close
		wrap:  func(b *memory.Backend) lock.Backend { return &leaky{Backend: b, w: b, stop: make(chan struct{})} },
		fails: []string{"Goroutines"},
		opts:  []Option{WithTTL(50 * time.Millisecond)},
	},
}

// TestMutants runs, for each mutant, the subtests that must catch it, in a
// child process per mutant (all at once, as they mostly wait), and checks
// that each of those subtests failed.
func TestMutants(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the negative controls start child processes")
	}
	outs := make([][]byte, len(mutants))
	errs := make([]error, len(mutants))
	var wg sync.WaitGroup
	for i, mu := range mutants {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run="+runPattern(mu.fails), "-test.v", "-test.count=1", "-test.timeout=2m")
			cmd.Env = append(os.Environ(), mutantEnv+"="+mu.name)
			outs[i], errs[i] = cmd.CombinedOutput()
		})
	}
	wg.Wait()
	for i, mu := range mutants {
		for _, sub := range mu.fails {
			if !strings.Contains(string(outs[i]), "--- FAIL: TestMutant/"+sub+" ") {
				t.Errorf("subtest %s did not catch the mutant %s (err %v); output:\n%s", sub, mu.name, errs[i], outs[i])
			}
		}
	}
}

// runPattern returns a -test.run pattern for the given subtests of
// TestMutant, such as "TryAcquire" and "Exclusion/OneKey".
func runPattern(subs []string) string {
	var levels [][]string
	for _, sub := range subs {
		for i, part := range strings.Split(sub, "/") {
			if i == len(levels) {
				levels = append(levels, nil)
			}
			if q := regexp.QuoteMeta(part); !slices.Contains(levels[i], q) {
				levels[i] = append(levels[i], q)
			}
		}
	}
	pattern := "^TestMutant$"
	for _, alts := range levels {
		pattern += "/^(" + strings.Join(alts, "|") + ")$"
	}
	return pattern
}

// TestMutant runs the suite on the mutant named by $LOCKTEST_MUTANT; only
// TestMutants runs it.
func TestMutant(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("run by TestMutants")
	}
	for _, mu := range mutants {
		if mu.name == name {
			Run(t, func(t *testing.T) lock.Backend {
				b := memory.New()
				return mu.wrap(b)
			}, mu.opts...)
			return
		}
	}
	t.Fatalf("no mutant %q", name)
}

// grantAll grants every attempt, held or not.
type grantAll struct{ token atomic.Uint64 }

func (g *grantAll) Acquire(_ context.Context, req lock.Request) (lock.Result, error) {
	return lock.Result{Acquired: true, Token: g.token.Add(1), Pinned: req.Renew, Start: time.Now()}, nil
}

func (g *grantAll) Extend(_ context.Context, req lock.Request) (lock.Result, error) {
	return lock.Result{Acquired: true, Token: req.Token, Pinned: req.Renew}, nil
}

func (g *grantAll) Release(context.Context, lock.Request) error { return nil }
func (g *grantAll) Close() error                                { return nil }

// notTokens reports the complement of every token, so that tokens
// decrease.
type notTokens struct{ b *memory.Backend }

func (n *notTokens) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	res, err := n.b.Acquire(ctx, req)
	res.Token = ^res.Token
	return res, err
}

func (n *notTokens) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	res, err := n.b.Wait(ctx, req, d)
	res.Token = ^res.Token
	return res, err
}

func (n *notTokens) Extend(ctx context.Context, req lock.Request) (lock.Result, error) {
	req.Token = ^req.Token
	res, err := n.b.Extend(ctx, req)
	res.Token = ^res.Token
	return res, err
}

func (n *notTokens) Release(ctx context.Context, req lock.Request) error {
	req.Token = ^req.Token
	return n.b.Release(ctx, req)
}

func (n *notTokens) Close() error { return n.b.Close() }

// releaseAny frees a key whoever holds it: it releases with the token of
// the key's last grant instead of the caller's.
type releaseAny struct {
	lock.Backend
	w    lock.Waiter
	mu   sync.Mutex
	last map[string]uint64
}

func (r *releaseAny) granted(key string, res lock.Result) {
	if res.Acquired {
		r.mu.Lock()
		r.last[key] = res.Token
		r.mu.Unlock()
	}
}

func (r *releaseAny) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	res, err := r.Backend.Acquire(ctx, req)
	r.granted(req.Key, res)
	return res, err
}

func (r *releaseAny) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	res, err := r.w.Wait(ctx, req, d)
	r.granted(req.Key, res)
	return res, err
}

func (r *releaseAny) Release(ctx context.Context, req lock.Request) error {
	r.mu.Lock()
	req.Token = r.last[req.Key]
	r.mu.Unlock()
	return r.Backend.Release(ctx, req)
}

// scaleTTL sets the TTL of keys that do not renew to TTL*mul/div.
type scaleTTL struct {
	*memory.Backend
	mul, div time.Duration
}

func (s *scaleTTL) scale(req lock.Request) lock.Request {
	if !req.Renew {
		req.TTL = req.TTL * s.mul / s.div
	}
	return req
}

func (s *scaleTTL) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	return s.Backend.Acquire(ctx, s.scale(req))
}

func (s *scaleTTL) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	return s.Backend.Wait(ctx, s.scale(req), d)
}

func (s *scaleTTL) Extend(ctx context.Context, req lock.Request) (lock.Result, error) {
	return s.Backend.Extend(ctx, s.scale(req))
}

// deafWait waits without its context.
type deafWait struct{ *memory.Backend }

func (d *deafWait) Wait(_ context.Context, req lock.Request, dur time.Duration) (lock.Result, error) {
	return d.Backend.Wait(context.Background(), req, dur)
}

// lazyClose does not close the backend, so it wakes no waiter.
type lazyClose struct{ *memory.Backend }

func (l *lazyClose) Close() error { return nil }

// leaky starts a goroutine per attempt that lasts until Close.
type leaky struct {
	lock.Backend
	w    lock.Waiter
	stop chan struct{}
	once sync.Once
}

func (l *leaky) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	go func() { <-l.stop }()
	return l.Backend.Acquire(ctx, req)
}

func (l *leaky) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	return l.w.Wait(ctx, req, d)
}

func (l *leaky) Close() error {
	l.once.Do(func() { close(l.stop) })
	return l.Backend.Close()
}
