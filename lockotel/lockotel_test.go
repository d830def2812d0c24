package lockotel_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/lockotel"
	"github.com/leaselock/lock/memory"
)

// backend is a memory backend whose leases renew through Extend, as over a
// network, whose extensions fail while refuse is set, and which reports an
// error of node 1 on every release.
type backend struct {
	*memory.Backend
	refuse atomic.Bool
}

func (b *backend) Acquire(ctx context.Context, req lock.Request) (lock.Result, error) {
	req.Renew = false
	return b.Backend.Acquire(ctx, req)
}

func (b *backend) Wait(ctx context.Context, req lock.Request, d time.Duration) (lock.Result, error) {
	req.Renew = false
	return b.Backend.Wait(ctx, req, d)
}

func (b *backend) Extend(ctx context.Context, req lock.Request) (lock.Result, error) {
	if b.refuse.Load() {
		return lock.Result{}, lock.ErrNotHeld
	}
	req.Renew = false
	return b.Backend.Extend(ctx, req)
}

func (b *backend) Release(ctx context.Context, req lock.Request) error {
	lock.ReportNodeError(ctx, 1, "10.0.0.2:6379", errors.New("i/o timeout"))
	return b.Backend.Release(ctx, req)
}

// lifeCycle runs, on a fake clock, the life of two leases of key "job" in
// a Mutex observed by obs: the first is held 1.5s and renewed once; the
// second waits for it 1.5s, is extended, then lost when a renewal is
// refused 1s after its grant. A TryAcquire fails in between.
func lifeCycle(t *testing.T, obs lock.Observer) {
	b := &backend{Backend: memory.New()}
	m := lock.New(b, lock.WithObserver(obs), lock.WithTTL(3*time.Second), lock.WithDriftFactor(0))
	defer m.Close()
	ctx := t.Context()
	l1, err := m.Acquire(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.TryAcquire(ctx, "job"); !errors.Is(err, lock.ErrNotAcquired) {
		t.Fatalf("TryAcquire() = %v, want %v", err, lock.ErrNotAcquired)
	}
	go func() {
		time.Sleep(1500 * time.Millisecond)
		_ = l1.Release(ctx)
	}()
	l2, err := m.Acquire(ctx, "job", lock.WithDelay(time.Minute)) // woken by the release
	if err != nil {
		t.Fatal(err)
	}
	synctest.Wait() // l2's renewal has started, with a timer for TTL/3
	if err := l2.Extend(ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	b.refuse.Store(true)
	<-l2.Done()
	if err := l2.Release(ctx); !errors.Is(err, lock.ErrLeaseLost) {
		t.Fatalf("Release() = %v, want %v", err, lock.ErrLeaseLost)
	}
	synctest.Wait()
}

// collect returns what reader has.
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	all := make(map[string]metricdata.Aggregation)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != lockotel.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, lockotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			all[m.Name] = m.Data
		}
	}
	return all
}

// counter returns the value of the counter name with exactly attributes kvs.
func counter(t *testing.T, all map[string]metricdata.Aggregation, name string, kvs ...attribute.KeyValue) int64 {
	t.Helper()
	sum, ok := all[name].(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is %T, want an int64 sum", name, all[name])
	}
	set := attribute.NewSet(kvs...)
	for _, dp := range sum.DataPoints {
		if dp.Attributes.Equals(&set) {
			return dp.Value
		}
	}
	return 0
}

// histogram returns the count and sum of the histogram name with exactly
// attributes kvs.
func histogram(t *testing.T, all map[string]metricdata.Aggregation, name string, kvs ...attribute.KeyValue) (uint64, float64) {
	t.Helper()
	h, ok := all[name].(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s is %T, want a float64 histogram", name, all[name])
	}
	set := attribute.NewSet(kvs...)
	for _, dp := range h.DataPoints {
		if dp.Attributes.Equals(&set) {
			return dp.Count, dp.Sum
		}
	}
	return 0, 0
}

// TestObserverMetrics pins the metrics of issue 4 item 3 over a life cycle:
// acquire latency, wait and attempts, hold time, renewals, losses and node
// errors, with exact values on the fake clock, and no key attribute.
func TestObserverMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		defer provider.Shutdown(context.Background())
		obs, err := lockotel.NewObserver(lockotel.WithMeterProvider(provider))
		if err != nil {
			t.Fatal(err)
		}
		lifeCycle(t, obs)
		all := collect(t, reader)

		acquired := attribute.String("lock.outcome", "acquired")
		notAcquired := attribute.String("lock.outcome", "not_acquired")
		for _, h := range []struct {
			name  string
			kvs   []attribute.KeyValue
			count uint64
			sum   float64
		}{
			{"lock.acquire.duration", []attribute.KeyValue{acquired}, 2, 1.5},
			{"lock.acquire.duration", []attribute.KeyValue{notAcquired}, 1, 0},
			{"lock.acquire.wait.duration", []attribute.KeyValue{acquired}, 2, 1.5},
			{"lock.acquire.wait.duration", []attribute.KeyValue{notAcquired}, 1, 0},
			{"lock.hold.duration", []attribute.KeyValue{attribute.String("lock.end", "released")}, 1, 1.5},
			{"lock.hold.duration", []attribute.KeyValue{attribute.String("lock.end", "lost")}, 1, 1},
		} {
			if count, sum := histogram(t, all, h.name, h.kvs...); count != h.count || sum != h.sum {
				t.Errorf("%s%v: count %d, sum %v; want %d, %v", h.name, h.kvs, count, sum, h.count, h.sum)
			}
		}
		for _, c := range []struct {
			name string
			kvs  []attribute.KeyValue
			want int64
		}{
			{"lock.acquire.attempts", []attribute.KeyValue{acquired}, 3},
			{"lock.acquire.attempts", []attribute.KeyValue{notAcquired}, 1},
			{"lock.renewals", []attribute.KeyValue{attribute.String("lock.outcome", "renewed"), attribute.Bool("lock.renewal.auto", true)}, 1},
			{"lock.renewals", []attribute.KeyValue{attribute.String("lock.outcome", "renewed"), attribute.Bool("lock.renewal.auto", false)}, 1},
			{"lock.renewals", []attribute.KeyValue{attribute.String("lock.outcome", "failed"), attribute.Bool("lock.renewal.auto", true)}, 1},
			{"lock.losses", []attribute.KeyValue{attribute.String("lock.end", "lost")}, 1},
			{"lock.node.errors", []attribute.KeyValue{
				attribute.String("lock.operation", "release"), attribute.Int("lock.node", 1), attribute.String("lock.node.address", "10.0.0.2:6379"),
			}, 2},
		} {
			if got := counter(t, all, c.name, c.kvs...); got != c.want {
				t.Errorf("%s%v = %d, want %d", c.name, c.kvs, got, c.want)
			}
		}
	})
}

// TestObserverKeyAttribute pins that WithKeyAttribute adds lock.key to
// every metric.
func TestObserverKeyAttribute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		defer provider.Shutdown(context.Background())
		obs, err := lockotel.NewObserver(lockotel.WithMeterProvider(provider), lockotel.WithKeyAttribute(true))
		if err != nil {
			t.Fatal(err)
		}
		lifeCycle(t, obs)
		key := attribute.String("lock.key", "job")
		for name, data := range collect(t, reader) {
			var sets []attribute.Set
			switch d := data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					sets = append(sets, dp.Attributes)
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					sets = append(sets, dp.Attributes)
				}
			}
			if len(sets) == 0 {
				t.Errorf("%s has no data points", name)
			}
			for _, set := range sets {
				if v, ok := set.Value(key.Key); !ok || v != key.Value {
					t.Errorf("%s%v has no %v", name, set.ToSlice(), key)
				}
			}
		}
		if got := counter(t, collect(t, reader), "lock.losses", attribute.String("lock.end", "lost"), key); got != 1 {
			t.Errorf("lock.losses with the key = %d, want 1", got)
		}
	})
}
