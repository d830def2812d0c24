package rueidislock

import "time"

// ReleaseTimeouts is releaseTimeouts, for the tests' bounds.
const ReleaseTimeouts = releaseTimeouts

// SetProposalClock makes b propose fencing tokens from clock, as a client
// whose clock is off would.
func SetProposalClock(b *Backend, clock func() time.Time) { b.proposalClock = clock }

// SkipRepair makes b's quarantine end without repairing the counters: the
// negative control of the repair.
func SkipRepair(b *Backend) { b.quarantine.noRepair = true }
