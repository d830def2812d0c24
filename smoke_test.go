package lock_test

import (
	"context"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/memory"
)

func TestSmoke(t *testing.T) {
	b, _ := memory.New()
	m := lock.New(b)
	defer m.Close()
	ctx := context.Background()
	l, err := m.Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.TryAcquire(ctx, "k"); err == nil {
		t.Fatal("want err")
	} else {
		t.Log(err)
	}
	done := make(chan *lock.Lease)
	go func() {
		l2, err := m.Acquire(ctx, "k")
		if err != nil {
			t.Error(err)
		}
		done <- l2
	}()
	time.Sleep(10 * time.Millisecond)
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l2 := <-done
	t.Log(l.Token(), l2.Token(), l.Err(), context.Cause(l.Context()))
	l2.Release(ctx)
	if n := b.Len(); n != 0 {
		t.Fatal(n)
	}
	l3, err := m.Acquire(ctx, "x", lock.WithAutoExtend(false), lock.WithTTL(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	<-l3.Done()
	t.Log(l3.Err(), l3.Release(ctx))
}
