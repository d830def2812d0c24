package rueidislock_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/rueidislock"
)

func TestExploreACL(t *testing.T) {
	rules := strings.Fields(getenv("RULES", "~* &* -@all +get +set +del +pexpire +pttl +eval +evalsha +ping +publish +subscribe +unsubscribe"))
	args := append([]string{"--user", "locker", "on", ">pw"}, rules...)
	servers := redistest.StartN(t, 3, redistest.WithArgs(args...))
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = fmt.Sprintf("redis://locker:pw@%s", s.Addr())
	}
	b, err := rueidislock.Dial(urls, rueidislock.WithNodeTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	m := lock.New(b, lock.WithTTL(600*time.Millisecond))
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l, err := m.Acquire(ctx, "acl:a")
	if err != nil {
		t.Fatal("acquire", err)
	}
	if err := l.Extend(ctx, time.Second); err != nil {
		t.Error("extend", err)
	}
	done := make(chan error)
	go func() {
		l2, err := m.Acquire(ctx, "acl:a")
		if err == nil {
			err = l2.Release(ctx)
		}
		done <- err
	}()
	time.Sleep(700 * time.Millisecond)
	start := time.Now()
	if err := l.Release(ctx); err != nil {
		t.Error("release", err)
	}
	if err := <-done; err != nil {
		t.Error("waiter", err)
	}
	t.Logf("handoff %v", time.Since(start))
	for i, s := range servers {
		log, _ := s.Do("ACL", "LOG").ToArray()
		for _, e := range log {
			mp, _ := e.AsMap()
			str := func(k string) string { v := mp[k]; s, _ := v.ToString(); return s }
			r, o, c := str("reason"), str("object"), str("context")
			t.Logf("node %d: denied %s %q (%s)", i, r, o, c)
		}
	}
}

func getenv(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}
