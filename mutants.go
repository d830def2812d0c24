package lock

import "context"

// mutants break a Mutex on purpose, each in one way: the negative controls
// of RELIABILITY.md §6 (H7) that live in this package, each of which a
// test must catch. They are all false in production: only export_test.go
// sets them, so no program outside this package's tests can reach them.
// The other controls (M2-M5, M7, M8) break rueidislock, and have knobs
// there.
type mutants struct {
	// M1: a lease's deadline is the grant's return plus the whole TTL:
	// no drift, and the time the attempt took not subtracted.
	noValidityMath bool
	// M6: a renewal is not bounded by the lease's validity, and the lease
	// waits for one under way at its deadline instead of ending: the lease
	// lives on as long as the backend takes to answer.
	lateRenewal bool
	// M9: Release frees the key before it cancels the lease's context,
	// so another holder can start while this one's work still runs.
	releaseFirst bool
}

// releaseFirstLocked is Release under M9: the key is freed, then the
// lease ends. It is called with l.mu held, and unlocks it.
func (l *Lease) releaseFirstLocked(ctx context.Context, cause error) error {
	err := l.releaseLocked(ctx, cause)
	l.end(ErrReleased)
	return err
}
