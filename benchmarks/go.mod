module github.com/leaselock/lock/benchmarks

go 1.25

require (
	github.com/leaselock/lock v0.0.0-00010101000000-000000000000
	github.com/moby/locker v1.0.1
)

replace github.com/leaselock/lock => ../
