// Package lockotel records what the locks of package lock do as
// OpenTelemetry metrics: an Observer to pass to lock.WithObserver.
//
//	obs, err := lockotel.NewObserver(lockotel.WithMeterProvider(provider))
//	if err != nil {
//		return err
//	}
//	m := lock.New(backend, lock.WithObserver(obs))
//
// It is a package of its own so that programs that do not use it do not
// build OpenTelemetry: package lock and its backends import none of it.
//
// # Metrics
//
// Durations are histograms in seconds; counts are counters.
//
//	lock.acquire.duration       time an Acquire call took, waits included  lock.outcome
//	lock.acquire.wait.duration  time it waited after its first attempt     lock.outcome
//	lock.acquire.attempts       attempts made by Acquire calls             lock.outcome
//	lock.hold.duration          time from a lease's grant to its release   lock.end
//	lock.renewals               extensions of leases                       lock.outcome, lock.renewal.auto
//	lock.losses                 leases lost or expired before Release      lock.end
//	lock.node.errors            failures of one node of a backend          lock.operation, lock.node, lock.node.address
//
// lock.outcome is "acquired" or "not_acquired" for an Acquire call, and
// "renewed" or "failed" for a renewal. lock.end says how a lease ended:
// "released", "lost" (ErrLeaseLost), "expired" (ErrExpired), "closed"
// (ErrClosed), or "canceled" when the context given to Acquire ended.
// lock.operation is "acquire", "extend" or "release"; lock.node is the
// node's index in the backend. No attribute names the key unless
// WithKeyAttribute asks for it.
package lockotel

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/leaselock/lock"
)

// ScopeName is the name of the instrumentation scope of the metrics.
const ScopeName = "github.com/leaselock/lock/lockotel"

// An Observer records the events of package lock as metrics. Create one
// with NewObserver; it is safe for concurrent use.
type Observer struct {
	acquireDuration metric.Float64Histogram
	waitDuration    metric.Float64Histogram
	attempts        metric.Int64Counter
	holdDuration    metric.Float64Histogram
	renewals        metric.Int64Counter
	losses          metric.Int64Counter
	nodeErrors      metric.Int64Counter
	withKey         bool

	acquired, notAcquired attrs
	renewed, failed       [2]attrs // by auto: 0 false, 1 true
	ends                  map[string]attrs
}

var _ lock.Observer = (*Observer)(nil)

// An Option configures an Observer.
type Option func(*config)

type config struct {
	provider metric.MeterProvider
	key      bool
}

// WithMeterProvider sets the MeterProvider the metrics are recorded with.
// Default: otel.GetMeterProvider(), the global one.
func WithMeterProvider(p metric.MeterProvider) Option {
	return func(c *config) { c.provider = p }
}

// WithKeyAttribute sets whether every metric has the attribute lock.key,
// the backend key. Each key is then a time series of its own: turn it on
// only for a bounded set of keys. Default: false.
func WithKeyAttribute(on bool) Option {
	return func(c *config) { c.key = on }
}

// Bucket boundaries, in seconds: an Acquire takes from microseconds (in
// process) to the length of a wait; a lease is held up to minutes or hours.
var (
	acquireBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	holdBuckets    = []float64{0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600}
)

// NewObserver returns an Observer that records the metrics listed in the
// package documentation with a Meter named ScopeName. It fails if an
// instrument cannot be made.
func NewObserver(opts ...Option) (*Observer, error) {
	var c config
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.provider == nil {
		c.provider = otel.GetMeterProvider()
	}
	meter := c.provider.Meter(ScopeName)
	o := &Observer{withKey: c.key}
	var err, e error
	o.acquireDuration, e = meter.Float64Histogram("lock.acquire.duration", metric.WithUnit("s"),
		metric.WithDescription("The time an Acquire call took, waits included."),
		metric.WithExplicitBucketBoundaries(acquireBuckets...))
	err = errors.Join(err, e)
	o.waitDuration, e = meter.Float64Histogram("lock.acquire.wait.duration", metric.WithUnit("s"),
		metric.WithDescription("The time an Acquire call waited after its first attempt failed."),
		metric.WithExplicitBucketBoundaries(acquireBuckets...))
	err = errors.Join(err, e)
	o.attempts, e = meter.Int64Counter("lock.acquire.attempts", metric.WithUnit("{attempt}"),
		metric.WithDescription("The attempts Acquire calls made."))
	err = errors.Join(err, e)
	o.holdDuration, e = meter.Float64Histogram("lock.hold.duration", metric.WithUnit("s"),
		metric.WithDescription("The time from the grant of a lease to its release."),
		metric.WithExplicitBucketBoundaries(holdBuckets...))
	err = errors.Join(err, e)
	o.renewals, e = meter.Int64Counter("lock.renewals", metric.WithUnit("{renewal}"),
		metric.WithDescription("The extensions of leases, by their own renewal or by Lease.Extend."))
	err = errors.Join(err, e)
	o.losses, e = meter.Int64Counter("lock.losses", metric.WithUnit("{loss}"),
		metric.WithDescription("The leases lost or expired before their holder released them."))
	err = errors.Join(err, e)
	o.nodeErrors, e = meter.Int64Counter("lock.node.errors", metric.WithUnit("{error}"),
		metric.WithDescription("The failures of one node of a backend over several."))
	err = errors.Join(err, e)
	if err != nil {
		return nil, err
	}

	o.acquired = newAttrs(attribute.String("lock.outcome", "acquired"))
	o.notAcquired = newAttrs(attribute.String("lock.outcome", "not_acquired"))
	for i, auto := range []bool{false, true} {
		o.renewed[i] = newAttrs(attribute.String("lock.outcome", "renewed"), attribute.Bool("lock.renewal.auto", auto))
		o.failed[i] = newAttrs(attribute.String("lock.outcome", "failed"), attribute.Bool("lock.renewal.auto", auto))
	}
	o.ends = make(map[string]attrs)
	for _, end := range []string{"released", "lost", "expired", "closed", "canceled"} {
		o.ends[end] = newAttrs(attribute.String("lock.end", end))
	}
	return o, nil
}

// attrs is a fixed set of attributes, ready to record with.
type attrs struct {
	kvs []attribute.KeyValue
	opt metric.MeasurementOption
}

func newAttrs(kvs ...attribute.KeyValue) attrs {
	return attrs{kvs: kvs, opt: metric.WithAttributeSet(attribute.NewSet(kvs...))}
}

// with returns the option that records a with key, if the Observer records
// keys.
func (o *Observer) with(a attrs, key string) metric.MeasurementOption {
	if !o.withKey {
		return a.opt
	}
	kvs := make([]attribute.KeyValue, 0, len(a.kvs)+1)
	kvs = append(append(kvs, a.kvs...), attribute.String("lock.key", key))
	return metric.WithAttributes(kvs...)
}

// Acquired records lock.acquire.duration, lock.acquire.wait.duration and
// lock.acquire.attempts.
func (o *Observer) Acquired(ctx context.Context, e lock.AcquireEvent) {
	a := o.acquired
	if e.Err != nil {
		a = o.notAcquired
	}
	opt := o.with(a, e.Key)
	o.acquireDuration.Record(ctx, e.Latency.Seconds(), opt)
	o.waitDuration.Record(ctx, e.Wait.Seconds(), opt)
	o.attempts.Add(ctx, int64(e.Attempts), opt)
}

// Renewed records lock.renewals.
func (o *Observer) Renewed(ctx context.Context, e lock.RenewEvent) {
	i := 0
	if e.Auto {
		i = 1
	}
	a := o.renewed[i]
	if e.Err != nil {
		a = o.failed[i]
	}
	o.renewals.Add(ctx, 1, o.with(a, e.Key))
}

// Lost records lock.losses.
func (o *Observer) Lost(ctx context.Context, e lock.LeaseEvent) {
	o.losses.Add(ctx, 1, o.with(o.ends[endOf(e.Cause)], e.Key))
}

// Released records lock.hold.duration.
func (o *Observer) Released(ctx context.Context, e lock.ReleaseEvent) {
	o.holdDuration.Record(ctx, e.Held.Seconds(), o.with(o.ends[endOf(e.Cause)], e.Key))
}

// NodeError records lock.node.errors.
func (o *Observer) NodeError(ctx context.Context, e lock.NodeErrorEvent) {
	kvs := []attribute.KeyValue{
		attribute.String("lock.operation", e.Op),
		attribute.Int("lock.node", e.Node),
		attribute.String("lock.node.address", e.Addr),
	}
	if o.withKey {
		kvs = append(kvs, attribute.String("lock.key", e.Key))
	}
	o.nodeErrors.Add(ctx, 1, metric.WithAttributes(kvs...))
}

// endOf names how a lease that ended with cause ended, for lock.end.
func endOf(cause error) string {
	switch {
	case cause == nil || errors.Is(cause, lock.ErrReleased):
		return "released"
	case errors.Is(cause, lock.ErrLeaseLost):
		return "lost"
	case errors.Is(cause, lock.ErrExpired):
		return "expired"
	case errors.Is(cause, lock.ErrClosed):
		return "closed"
	}
	return "canceled"
}
