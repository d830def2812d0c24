package lock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/memory"
)

// The whole life of a lock: make a Mutex over a backend, hold a key while
// the work runs under the lease's context, release it.
func Example() {
	backend := memory.New()
	m := lock.New(backend, lock.WithTTL(10*time.Second))
	defer m.Close()

	ctx := context.Background()
	lease, err := m.Acquire(ctx, "nightly-report")
	if err != nil {
		log.Fatal(err)
	}
	// Release on a context that a cancelled request cannot stop.
	defer lease.Release(context.WithoutCancel(ctx))

	work := lease.Context() // cancelled if the lease is lost
	fmt.Println("holding", lease.Key(), "err:", work.Err())
	// Output: holding nightly-report err: <nil>
}

// New takes the defaults of every call. The namespace is the seed's
// Lock.create({namespace}); the backend is the seed's {type: "inMemory"}.
func ExampleNew() {
	backend := memory.New()
	m := lock.New(backend,
		lock.WithNamespace("billing"),
		lock.WithTTL(30*time.Second),
		lock.WithRetry(10),
		lock.WithDelay(200*time.Millisecond),
	)
	defer m.Close() // the seed's lock.destroy()

	lease, err := m.AcquireNS(context.Background(), "invoice-42")
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(context.Background())
	fmt.Println(lease.Key())
	// Output: billing:invoice-42
}

// Acquire waits for a key until its context is done; bound the wait with a
// timeout. The failure matches both ErrNotAcquired and the context's error.
func ExampleMutex_Acquire() {
	backend := memory.New()
	m := lock.New(backend)
	defer m.Close()
	ctx := context.Background()

	first, err := m.Acquire(ctx, "cache-rebuild")
	if err != nil {
		log.Fatal(err)
	}

	wait, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = m.Acquire(wait, "cache-rebuild")
	fmt.Println("second caller:", errors.Is(err, lock.ErrNotAcquired), errors.Is(err, context.DeadlineExceeded))

	// A waiter gets the key as soon as it is released.
	got := make(chan uint64)
	go func() {
		lease, err := m.Acquire(ctx, "cache-rebuild")
		if err != nil {
			log.Fatal(err)
		}
		defer lease.Release(ctx)
		got <- lease.Token()
	}()
	first.Release(ctx)
	fmt.Println("next token is larger:", <-got > first.Token())
	// Output:
	// second caller: true true
	// next token is larger: true
}

// TryAcquire makes one attempt: the cron job on the other replicas skips
// its run instead of waiting.
func ExampleMutex_TryAcquire() {
	backend := memory.New()
	m := lock.New(backend)
	defer m.Close()
	ctx := context.Background()

	for replica := 1; replica <= 3; replica++ {
		lease, err := m.TryAcquire(ctx, "cron:cleanup")
		if errors.Is(err, lock.ErrNotAcquired) {
			fmt.Printf("replica %d: another replica runs it\n", replica)
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("replica %d: runs the job\n", replica)
		defer lease.Release(ctx)
	}
	// Output:
	// replica 1: runs the job
	// replica 2: another replica runs it
	// replica 3: another replica runs it
}

// AcquireNS puts the Mutex's namespace before the key, as the seed's lockNs
// does; Acquire uses the key as given, so both meet on one lock.
func ExampleMutex_AcquireNS() {
	backend := memory.New()
	m := lock.New(backend, lock.WithNamespace("orders"))
	defer m.Close()
	ctx := context.Background()

	lease, err := m.AcquireNS(ctx, "order-7")
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(ctx)
	_, err = m.TryAcquire(ctx, "orders:order-7")
	fmt.Println(lease.Key(), errors.Is(err, lock.ErrNotAcquired))
	// Output: orders:order-7 true
}

// A lease's context stops the work when the lease ends. Here the lease does
// not renew itself, so it ends at its deadline, and the work sees why.
func ExampleLease_Context() {
	backend := memory.New()
	m := lock.New(backend)
	defer m.Close()
	ctx := context.Background()

	lease, err := m.Acquire(ctx, "import", lock.WithAutoExtend(false), lock.WithTTL(50*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(ctx)

	work := lease.Context()
	for batch := 0; ; batch++ {
		select {
		case <-work.Done():
			fmt.Println("stopped:", context.Cause(work))
			return
		case <-time.After(10 * time.Millisecond):
			// process one batch
		}
	}
	// Output: stopped: lock: lease expired
}

// Extend gives a lease that does not renew itself more time, counted from
// the call.
func ExampleLease_Extend() {
	backend := memory.New()
	m := lock.New(backend, lock.WithAutoExtend(false))
	defer m.Close()
	ctx := context.Background()

	lease, err := m.Acquire(ctx, "migration", lock.WithTTL(time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(ctx)

	before, _ := lease.Deadline()
	if err := lease.Extend(ctx, time.Minute); err != nil {
		log.Fatal(err)
	}
	after, _ := lease.Deadline()
	fmt.Println("deadline moved by more than 58s:", after.Sub(before) > 58*time.Second)
	// Output: deadline moved by more than 58s: true
}

// WithLock holds the key for the length of a function, renewing the lease,
// and releases it after.
func ExampleWithLock() {
	backend := memory.New()
	m := lock.New(backend)
	defer m.Close()

	err := lock.WithLock(context.Background(), m, "daily-digest", func(ctx context.Context) error {
		fmt.Println("sending the digest")
		return ctx.Err() // nil while the lease holds
	})
	fmt.Println("err:", err)
	// Output:
	// sending the digest
	// err: <nil>
}

// Do is WithLock for work with a result. The fencing token goes with every
// write, so that the store can refuse a holder that lost its lease.
func ExampleDo() {
	backend := memory.New()
	m := lock.New(backend)
	defer m.Close()

	stock := map[string]int{"sku-1": 3}
	left, err := lock.Do(context.Background(), m, "sku-1", func(ctx context.Context) (int, error) {
		stock["sku-1"]--
		return stock["sku-1"], nil
	})
	fmt.Println(left, err)
	// Output: 2 <nil>
}

// fencedStore is the storage a lock protects, made safe against a holder
// that kept writing after its lease ended (a long GC pause, a stalled
// network): it remembers the largest fencing token it accepted and refuses
// writes that carry a smaller one. In a database this is a conditional
// update, such as UPDATE ... SET v = $1, token = $2 WHERE id = $3 AND
// token < $2.
type fencedStore struct {
	value string
	token uint64
}

var errStale = errors.New("stale fencing token")

func (s *fencedStore) Write(token uint64, value string) error {
	if token <= s.token {
		return errStale
	}
	s.value, s.token = value, token
	return nil
}

// A fencing token stops a holder whose lease ended without its noticing:
// the next holder's token is larger, so the storage refuses the old one.
func ExampleLease_Token() {
	backend := memory.New()
	m := lock.New(backend, lock.WithTTL(time.Minute))
	defer m.Close()
	ctx := context.Background()
	store := &fencedStore{}

	first, err := m.Acquire(ctx, "report")
	if err != nil {
		log.Fatal(err)
	}
	firstToken := first.Token()
	// The first holder stalls; its lease ends (here by Release, in life by
	// expiry) and another process takes the key.
	first.Release(ctx)
	second, err := m.Acquire(ctx, "report")
	if err != nil {
		log.Fatal(err)
	}
	defer second.Release(ctx)

	fmt.Println("second holder writes:", store.Write(second.Token(), "fresh"))
	fmt.Println("first holder wakes up and writes:", store.Write(firstToken, "stale"))
	fmt.Println("stored:", store.value)
	// Output:
	// second holder writes: <nil>
	// first holder wakes up and writes: stale fencing token
	// stored: fresh
}
