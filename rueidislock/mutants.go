package rueidislock

import (
	"encoding/hex"
	"fmt"

	"github.com/redis/rueidis"
)

// knobs are a Backend's test seams: a hook that pauses an Acquire at a
// chosen point, a random source that can fail, and the broken variants of
// the negative controls (RELIABILITY.md §6, H7), each of which a test must
// catch. They are all zero in production: only export_test.go sets them, so
// that no program outside this package's tests can reach them.
//
// M3 (a quorum of N/2) needs no knob: its setter lowers Backend.quorum.
// M1, M6 and M9 break package lock, and have knobs there.
type knobs struct {
	// afterRoundOne runs when an Acquire has decided to take the second
	// round of fencing, before it sends it (F3).
	afterRoundOne func()
	// random fills lock values; nil means crypto/rand, which does not fail.
	// A test sets a source that fails, which Acquire must not work around.
	random func([]byte) error

	// M2: the release script, in place of releaseScript and
	// quorumReleaseScript: one that deletes the key whatever value it
	// holds.
	release *rueidis.Lua
	// M4: a failed Acquire leaves its grants on the nodes until their TTL.
	noUndo bool
	// M5: the second round of fencing, in place of fenceScript: one that
	// raises the counter without checking that the key is still held.
	fence *rueidis.Lua
	// M7: lock values from this source, in place of random: math/rand in
	// the test, so that values no longer come from a secure source.
	values func([]byte) error
	// M8: the token is the proposal whenever a majority granted, whether
	// or not a majority stored it.
	ignoreStored bool
}

// lockValue returns a new lock value: 128 random bits in hex, from
// crypto/rand unless a test gave another source. When the source fails,
// Acquire fails: a value from a weaker source would be a guessable
// capability to release someone else's lock.
func (b *Backend) lockValue() (string, error) {
	fill := b.knobs.random
	if b.knobs.values != nil {
		fill = b.knobs.values
	}
	if fill == nil {
		return newValue(), nil
	}
	var v [16]byte
	if err := fill(v[:]); err != nil {
		return "", fmt.Errorf("rueidislock: no random lock value: %w", err)
	}
	return hex.EncodeToString(v[:]), nil
}

// releaseLua returns the script that releases a lease: releaseScript, or
// quorumReleaseScript over several nodes.
func (b *Backend) releaseLua() *rueidis.Lua {
	if b.knobs.release != nil {
		return b.knobs.release
	}
	if len(b.nodes) > 1 {
		return quorumReleaseScript
	}
	return releaseScript
}

// fenceLua returns the script of the second round of fencing: fenceScript.
func (b *Backend) fenceLua() *rueidis.Lua {
	if b.knobs.fence != nil {
		return b.knobs.fence
	}
	return fenceScript
}
