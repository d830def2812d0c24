package redistest_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/leaselock/lock/internal/redistest"
	"github.com/redis/rueidis"
)

// Two clients see one node differently: it is hidden from A (RELIABILITY
// S8) while B uses it, and B's requests are counted (F6).
func ExampleProxy() {
	srv, err := redistest.New()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	p, err := redistest.NewProxy(srv.Addr())
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	// Each client dials its own view of the node.
	dial := func(name string) rueidis.Client {
		addr, err := p.Listen(name)
		if err != nil {
			log.Fatal(err)
		}
		c, err := rueidis.NewClient(rueidis.ClientOption{
			InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true,
		})
		if err != nil {
			log.Fatal(err)
		}
		return c
	}
	a, b := dial("A"), dial("B")
	defer a.Close()
	defer b.Close()

	if err := p.SetFor("A", redistest.Blackhole()); err != nil {
		log.Fatal(err)
	}
	set := func(c rueidis.Client, v string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		return c.Do(ctx, c.B().Set().Key("k").Value(v).Build()).Error()
	}
	fmt.Println(set(a, "a"))                     // context deadline exceeded
	fmt.Println(set(b, "b"))                     // <nil>
	fmt.Println(p.StatsFor("B").Commands["SET"]) // 1

	// Lift the fault: A's connection lost a request, so it is reset, and
	// A reconnects on its next call.
	if err := p.Set(redistest.Pass()); err != nil {
		log.Fatal(err)
	}
}
