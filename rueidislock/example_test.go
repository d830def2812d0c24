package rueidislock_test

import (
	"context"
	"crypto/tls"
	"log"
	"time"

	"github.com/redis/rueidis"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/rueidislock"
)

// Dial connects to independent Redis nodes by address and owns the
// clients: closing the Mutex closes them. Credentials and the database go
// in the URLs.
func ExampleDial() {
	backend, err := rueidislock.Dial([]string{
		"redis://locker:secret@redis-a:6379/0",
		"redis://locker:secret@redis-b:6379/0",
		"redis://locker:secret@redis-c:6379/0",
	}, rueidislock.WithNodeTimeout(50*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	m := lock.New(backend, lock.WithNamespace("billing"))
	defer m.Close()

	err = lock.WithLock(context.Background(), m, "invoice-42", func(ctx context.Context) error {
		// Runs on one machine at a time; ctx ends if the lock is lost.
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// New takes rueidis clients built with any option: here TLS and an ACL
// user. The caller keeps them and closes them after the Mutex.
func ExampleNew() {
	var clients []rueidis.Client
	for _, addr := range []string{"redis-a:6380", "redis-b:6380", "redis-c:6380"} {
		client, err := rueidis.NewClient(rueidis.ClientOption{
			InitAddress:       []string{addr},
			Username:          "locker",
			Password:          "secret",
			TLSConfig:         &tls.Config{ServerName: "redis.internal", MinVersion: tls.VersionTLS12},
			ForceSingleClient: true, // each address is one node
			DisableCache:      true, // locks do not use client-side caching
		})
		if err != nil {
			log.Fatal(err)
		}
		defer client.Close()
		clients = append(clients, client)
	}
	backend, err := rueidislock.New(clients)
	if err != nil {
		log.Fatal(err)
	}
	m := lock.New(backend)
	defer m.Close()

	lease, err := m.Acquire(context.Background(), "nightly-report", lock.WithTTL(30*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(context.Background())
	log.Printf("holding %s with fencing token %d", lease.Key(), lease.Token())
}
