package rueidislock_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// A rueidis cluster client closes connections it replaced after a
		// refresh 5 s later, on a goroutine of its own (cluster.go, _refresh):
		// not ours, and gone on its own.
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
	)
}
