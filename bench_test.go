package lock_test

import (
	"context"
	"testing"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/memory"
)

func BenchmarkQuick(b *testing.B) {
	mb, _ := memory.New()
	m := lock.New(mb)
	defer m.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		l, err := m.Acquire(ctx, "k")
		if err != nil {
			b.Fatal(err)
		}
		l.Release(ctx)
	}
}
