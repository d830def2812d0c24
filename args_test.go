package lock_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/leaselock/lock"
)

// TestBadArguments pins guarantee 8: every bad argument is an error that
// matches ErrInvalid and names the argument, and nothing is held after it.
func TestBadArguments(t *testing.T) {
	var nilCtx context.Context
	long := strings.Repeat("k", lock.MaxKeyLen+1)
	for _, tc := range []struct {
		name string
		ctx  context.Context
		key  string
		opts []lock.Option
		arg  string // what the message must name
	}{
		{"nil ctx", nilCtx, "k", nil, "ctx"},
		{"empty key", context.Background(), "", nil, "key"},
		{"long key", context.Background(), long, nil, "key"},
		{"zero TTL", context.Background(), "k", []lock.Option{lock.WithTTL(0)}, "WithTTL"},
		{"negative TTL", context.Background(), "k", []lock.Option{lock.WithTTL(-time.Second)}, "WithTTL"},
		{"huge TTL", context.Background(), "k", []lock.Option{lock.WithTTL(lock.MaxTTL + 1)}, "WithTTL"},
		{"TTL inside the drift", context.Background(), "k", []lock.Option{lock.WithTTL(2 * time.Millisecond)}, "WithTTL"},
		{"negative drift", context.Background(), "k", []lock.Option{lock.WithDriftFactor(-0.1)}, "WithDriftFactor"},
		{"drift 1", context.Background(), "k", []lock.Option{lock.WithDriftFactor(1)}, "WithDriftFactor"},
		{"drift NaN", context.Background(), "k", []lock.Option{lock.WithDriftFactor(math.NaN())}, "WithDriftFactor"},
		{"drift Inf", context.Background(), "k", []lock.Option{lock.WithDriftFactor(math.Inf(1))}, "WithDriftFactor"},
		{"negative delay", context.Background(), "k", []lock.Option{lock.WithDelay(-1)}, "WithDelay"},
		{"negative jitter", context.Background(), "k", []lock.Option{lock.WithJitter(-1)}, "WithJitter"},
		{"no pause", context.Background(), "k", []lock.Option{lock.WithDelay(0), lock.WithJitter(0)}, "WithDelay"},
		{"nil backoff", context.Background(), "k", []lock.Option{lock.WithBackoff(nil)}, "WithBackoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newMemory(t)
			m := lock.New(b)
			defer m.Close()
			l, err := m.Acquire(tc.ctx, tc.key, tc.opts...)
			if !errors.Is(err, lock.ErrInvalid) {
				t.Fatalf("Acquire = %v, %v; want %v", l, err, lock.ErrInvalid)
			}
			if !strings.Contains(err.Error(), tc.arg) || !strings.HasPrefix(err.Error(), "lock: ") {
				t.Errorf("error %q does not name %s", err, tc.arg)
			}
			if n := b.Len(); n != 0 {
				t.Errorf("backend holds %d keys after a bad argument, want 0", n)
			}
			// The same option given to New fails every call.
			if tc.opts != nil {
				m2 := lock.New(newMemory(t), tc.opts...)
				defer m2.Close()
				if _, err := m2.TryAcquire(context.Background(), "k"); !errors.Is(err, lock.ErrInvalid) {
					t.Errorf("TryAcquire with New(%s) = %v, want %v", tc.name, err, lock.ErrInvalid)
				}
			}
		})
	}
}

func TestNilBackend(t *testing.T) {
	m := lock.New(nil)
	if _, err := m.Acquire(context.Background(), "k"); !errors.Is(err, lock.ErrInvalid) || !strings.Contains(err.Error(), "backend") {
		t.Errorf("Acquire on New(nil) = %v, want %v naming the backend", err, lock.ErrInvalid)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
}

func TestBadExtend(t *testing.T) {
	m := lock.New(newMemory(t))
	defer m.Close()
	l, err := m.Acquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(context.Background())
	var nilCtx context.Context
	if err := l.Extend(nilCtx, time.Second); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("Extend(nil) = %v, want %v", err, lock.ErrInvalid)
	}
	if err := l.Extend(context.Background(), -time.Second); !errors.Is(err, lock.ErrInvalid) || !strings.Contains(err.Error(), "ttl") {
		t.Errorf("Extend(-1s) = %v, want %v naming the TTL", err, lock.ErrInvalid)
	}
	if err := l.Release(nilCtx); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("Release(nil) = %v, want %v", err, lock.ErrInvalid)
	}
	if err := l.Err(); err != nil {
		t.Errorf("lease ended by bad calls: %v", err)
	}
}

// FuzzAcquireArgs checks that no key, TTL or drift factor makes Acquire
// panic, that each is accepted or refused with ErrInvalid, and that nothing
// is held after the lease is released.
func FuzzAcquireArgs(f *testing.F) {
	f.Add("k", int64(time.Second), 0.01, "ns")
	f.Add("", int64(0), -1.0, "")
	f.Add("a:b\r\n\x00{x}", int64(3*time.Millisecond), 0.999, "a")
	f.Add(strings.Repeat("x", 2000), int64(-1), math.NaN(), "ns")
	f.Fuzz(func(t *testing.T, key string, ttl int64, factor float64, ns string) {
		b := newMemory(t)
		m := lock.New(b, lock.WithNamespace(ns))
		defer m.Close()
		opts := []lock.Option{lock.WithTTL(time.Duration(ttl)), lock.WithDriftFactor(factor)}
		for _, acquire := range []func(context.Context, string, ...lock.Option) (*lock.Lease, error){m.TryAcquire, m.AcquireNS} {
			l, err := acquire(context.Background(), key, append(opts, lock.WithRetry(0))...)
			if err != nil {
				if !errors.Is(err, lock.ErrInvalid) {
					t.Fatalf("error %v is not ErrInvalid", err)
				}
				continue
			}
			if l.Key() != key && l.Key() != ns+":"+key {
				t.Fatalf("Key() = %q for key %q in namespace %q", l.Key(), key, ns)
			}
			if err := l.Release(context.Background()); err != nil {
				t.Fatalf("Release = %v", err)
			}
		}
		if n := b.Len(); n != 0 {
			t.Fatalf("backend holds %d keys", n)
		}
	})
}
