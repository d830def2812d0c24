package lockconfig_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/lockconfig"
	"github.com/leaselock/lock/memory"
)

// A service opens its Mutex from LOCK_CONFIG in one call, and falls back
// to an in-process lock when the variable is unset, as the seed did.
func ExampleOpenEnv() {
	// The deployment sets LOCK_CONFIG; here the example does.
	os.Setenv("LOCK_CONFIG", `{"lockConfig":{"type":"inMemory","retry":0,"delay":100}}`)
	defer os.Unsetenv("LOCK_CONFIG")

	m, err := lockconfig.OpenEnv("myApp")
	if errors.Is(err, lockconfig.ErrNotSet) {
		m, err = lock.New(memory.New(), lock.WithNamespace("myApp")), nil
	}
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close() // closes the backend and its connections too

	ctx := context.Background()
	lease, err := m.AcquireNS(ctx, "report")
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(context.WithoutCancel(ctx))
	fmt.Println("holding", lease.Key())
	// Output: holding myApp:report
}

// Parse reads the seed's config; its milliseconds stay milliseconds.
func ExampleParse() {
	c, err := lockconfig.Parse([]byte(`{
		"namespace": "myApp",
		"lockConfig": {
			"type": "redis",
			"connection": {"host": "127.0.0.1", "port": 6379},
			"lockOptions": {"driftFactor": 0.01, "retryCount": 0, "retryDelay": 200, "retryJitter": 100}
		}
	}`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Type, c.Namespace, c.Nodes[0])
	fmt.Println("retries:", *c.Retry, "delay:", *c.Delay, "jitter:", *c.Jitter, "drift:", *c.DriftFactor)
	// Output:
	// redis myApp redis://127.0.0.1:6379
	// retries: 0 delay: 200ms jitter: 100ms drift: 0.01
}

// Fields that only Go reads take duration strings; a bare number there is
// an error that names the field, never 5µs.
func ExampleParse_errors() {
	_, err := lockconfig.Parse([]byte(`{"type":"inMemory","ttl":5000}`))
	fmt.Println(err)

	_, err = lockconfig.Parse([]byte(`{"lockConfig":{"type":"redis","connection":{"host":"h"},"lockOptions":{"retryDelay":-5}}}`))
	var arg *lock.ArgError
	if errors.As(err, &arg) {
		fmt.Println(arg.Arg, errors.Is(err, lock.ErrInvalid))
	}
	// Output:
	// lock: invalid argument: ttl 5000: a duration needs a unit, like "5s"
	// lockConfig.lockOptions.retryDelay true
}

// Open takes the config's bytes, from a file for instance. The options
// given to it are the program's defaults, which the config overrides.
func ExampleOpen() {
	config := []byte(`{"type":"inMemory","retry":0,"delay":100,"ttl":"30s"}`)
	m, err := lockconfig.Open(config, "billing", lock.WithTTL(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	err = lock.WithLock(context.Background(), m, "billing:invoice-42", func(ctx context.Context) error {
		fmt.Println("invoicing")
		return nil
	})
	fmt.Println(err)
	// Output:
	// invoicing
	// <nil>
}

// A program may also fill a Config by hand, here for three Redis nodes
// over TLS; Open dials them.
func ExampleConfig() {
	retries := 3
	c := &lockconfig.Config{
		Type: lockconfig.TypeRedis,
		Nodes: []lockconfig.Node{
			{Host: "redis-a.internal", TLS: &lockconfig.TLS{CAFile: "/etc/redis/ca.pem"}},
			{Host: "redis-b.internal", TLS: &lockconfig.TLS{CAFile: "/etc/redis/ca.pem"}},
			{Host: "redis-c.internal", TLS: &lockconfig.TLS{CAFile: "/etc/redis/ca.pem"}},
		},
		NodeTimeout: 100 * time.Millisecond,
		TTL:         30 * time.Second,
		Retry:       &retries,
	}
	m, err := c.Open("myApp")
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	log.Printf("locking with %v", c) // no password is printed
}
