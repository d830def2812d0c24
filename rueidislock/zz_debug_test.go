package rueidislock_test

import (
	"context"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/internal/redistest"
	"github.com/leaselock/lock/rueidislock"
)

func TestZZContended(t *testing.T) {
	srv := redistest.Start(t)
	workers, total := zzWorkers(), 2000
	ms := make([]*lock.Mutex, workers)
	for i := range ms {
		b, err := rueidislock.Dial([]string{srv.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = lock.New(b)
		defer ms[i].Close()
	}
	srv.Do("CONFIG", "RESETSTAT")
	var left atomic.Int64
	left.Store(int64(total))
	var last atomic.Int64
	base := time.Now()
	var mu sync.Mutex
	var hand, rels []time.Duration
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				l, err := m.Acquire(context.Background(), "k")
				if err != nil {
					t.Error(err)
					return
				}
				got := time.Since(base)
				if r := last.Swap(0); r != 0 {
					mu.Lock()
					hand = append(hand, got-time.Duration(r-1))
					mu.Unlock()
				}
				r0 := time.Now()
				last.Store(int64(time.Since(base)) + 1)
				l.Release(context.Background())
				mu.Lock()
				rels = append(rels, time.Since(r0))
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	el := time.Since(base)
	sort.Slice(hand, func(i, j int) bool { return hand[i] < hand[j] })
	sort.Slice(rels, func(i, j int) bool { return rels[i] < rels[j] })
	t.Logf("release p50 %v p90 %v", rels[len(rels)/2], rels[len(rels)*9/10])
	t.Logf("acq/s %.0f handoff p50 %v p90 %v", float64(total)/el.Seconds(), hand[len(hand)/2], hand[len(hand)*9/10])
	info, _ := srv.Do("INFO", "commandstats").ToString()
	for _, line := range strings.Split(info, "\n") {
		if strings.HasPrefix(line, "cmdstat_") {
			t.Log(strings.TrimSpace(line))
		}
	}
}

func zzWorkers() int {
	if v := os.Getenv("ZZW"); v != "" {
		n, _ := strconv.Atoi(v)
		return n
	}
	return 8
}
