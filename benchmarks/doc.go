// Package benchmarks compares package lock with other Go keyed locks,
// measured in the same process, so that the results are ratios on one machine
// rather than numbers from different ones.
//
// It is a module of its own, so that the peers it measures never become
// dependencies of github.com/leaselock/lock; its go.mod points at the
// library in the parent directory with a replace directive. Run it from this
// directory:
//
//	go test -run xxx -bench . -count 5 ./... | tee new.txt
//	benchstat new.txt
//
// CI runs every benchmark once, to keep them building and working:
//
//	go vet ./... && go test -run xxx -bench . -benchtime=1x ./...
//
// BenchmarkMemory measures in-process keyed locks as
// BenchmarkMemory/<shape>/<impl>, in five shapes: uncontended (one
// goroutine, one key), distinct (b.RunParallel, a key per goroutine) and hot
// (b.RunParallel, one key), and distinct-x8 and hot-x8, the same with 8
// goroutines per CPU, as a server runs more goroutines than CPUs. The
// implementations are lock (this library on its
// memory backend, with default options), moby (github.com/moby/locker),
// mapmutex (a map of mutexes behind one mutex) and syncmutex (sync.Mutex, one
// per goroutine for distinct keys). The hot shape also reports max-wait-ms:
// the longest time a goroutine went between two of its lock and unlock
// rounds, a bound on the longest a lock call waited. It counts every pause of
// the process or the host too, so read it on a quiet machine.
//
// A later issue adds Redis peers, measured against the same servers:
// github.com/go-redsync/redsync, github.com/bsm/redislock and
// github.com/redis/rueidis/rueidislock.
package benchmarks
