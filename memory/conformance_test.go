package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/locktest"
	"github.com/leaselock/lock/memory"
)

// TestMain fails the package's tests if any goroutine outlives them (G7).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestConformance runs the conformance suite on the memory backend.
func TestConformance(t *testing.T) {
	locktest.Run(t, conformanceBackend())
}

// TestConformanceOneShard runs the suite with every key on one shard, so
// that keys share their shard's state: queues, counters and spare entries.
func TestConformanceOneShard(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the suite runs once, in TestConformance")
	}
	locktest.Run(t, conformanceBackend(memory.WithShards(1)))
}

// conformanceBackend returns the suite's constructor of memory backends.
func conformanceBackend(opts ...memory.Option) func(t *testing.T) lock.Backend {
	return func(t *testing.T) lock.Backend {
		b := memory.New(opts...)
		return b
	}
}
