package locktest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/leaselock/lock"
)

// Recorded histories (harness H6). A History keeps its intervals in memory
// and times them with time.Now, whose monotonic reading "has no meaning
// outside the current process". A Recorder instead writes each interval,
// and each write to a fenced resource, as one JSON line stamped with the
// host's monotonic clock, so that the histories of several processes on one
// host merge into one: see ReadRecording.

// A Recorder writes a history as JSON lines, one event per line: an
// interval during which a holder held a key (holder, key, token, start and
// end), or a write a holder made to a fenced resource (holder, key, token,
// time). Stamps are nanoseconds of the host's monotonic clock
// (CLOCK_MONOTONIC on Linux; elsewhere the wall clock), shared by every
// process of the host.
//
// An interval is written when it ends. A Recorder is safe for concurrent
// use.
type Recorder struct {
	mu   sync.Mutex
	w    io.Writer
	err  error                       // the first write error
	open map[*RecordedLease]struct{} // intervals not yet ended
}

// NewRecorder returns a Recorder that writes to w. Close does not close w.
func NewRecorder(w io.Writer) *Recorder {
	return &Recorder{w: w, open: make(map[*RecordedLease]struct{})}
}

// event is one line of a recorded history.
type event struct {
	Kind   string `json:"kind"` // kindHold or kindWrite
	Holder string `json:"holder"`
	Key    string `json:"key"`
	Token  uint64 `json:"token,omitempty"`
	Start  int64  `json:"start,omitempty"` // hold: when Acquire returned
	End    int64  `json:"end,omitempty"`   // hold: when it ended; absent while open
	At     int64  `json:"at,omitempty"`    // write: when it was made
}

const (
	kindHold  = "hold"
	kindWrite = "write"
)

// A RecordedLease is the open interval of a lease in a Recorder, ended by
// End or by the end of the lease's context, whichever comes first.
type RecordedLease struct {
	r      *Recorder
	l      *lock.Lease
	holder string
	key    string
	token  uint64
	start  int64
	stop   func() bool
	ended  bool // under r.mu
}

// Acquired opens the interval of lease l held by holder. Call it as soon as
// Acquire returns, and call End on the result just before Release.
//
// The interval also ends when l's context is observed done. If that end is
// observed after the lease's Deadline, as by a process that was paused
// (SIGSTOP, a long GC) across it, the interval ends at the Deadline: from
// then on the lease reports itself ended (Err is not nil) at every check,
// so a holder that checks before acting no longer believes it holds the
// key. Writes it makes anyway are recorded by Write and judged by fencing.
func (r *Recorder) Acquired(holder string, l *lock.Lease) *RecordedLease {
	rl := &RecordedLease{r: r, l: l, holder: holder, key: l.Key(), token: l.Token(), start: hostNow()}
	r.mu.Lock()
	r.open[rl] = struct{}{}
	r.mu.Unlock()
	rl.stop = context.AfterFunc(l.Context(), rl.end)
	return rl
}

// Write records that the holder wrote to a fenced resource now, presenting
// the lease's token. Whether a fenced store would have accepted it is
// decided when the histories are merged: see Recording.Replay.
func (rl *RecordedLease) Write() {
	rl.r.emit(event{Kind: kindWrite, Holder: rl.holder, Key: rl.key, Token: rl.token, At: hostNow()})
}

// End ends the interval, if the end of its lease's context has not ended it
// before, and writes it. Call it just before Release. End is idempotent.
func (rl *RecordedLease) End() {
	rl.end()
	rl.stop()
}

// end ends the interval now, or at the lease's deadline if the lease has
// ended and its deadline is earlier, unless it ended before.
func (rl *RecordedLease) end() {
	now, wall := hostNow(), time.Now()
	var deadline time.Time
	if rl.l.Err() != nil {
		deadline, _ = rl.l.Deadline()
	}
	line := encode(event{Kind: kindHold, Holder: rl.holder, Key: rl.key, Token: rl.token, Start: rl.start, End: intervalEnd(rl.start, now, wall, deadline)})
	// Written under the lock that marks the interval ended, so that the
	// caller that finds it ended by the other (End, or the context's end)
	// returns once it is written: Close must not come between.
	rl.r.mu.Lock()
	defer rl.r.mu.Unlock()
	if rl.ended {
		return
	}
	rl.ended = true
	delete(rl.r.open, rl)
	rl.r.writeLocked(line)
}

// intervalEnd returns the host stamp at which an interval opened at start
// ends, observed at host stamp now (time.Now() read as wall): now, or the
// lease's deadline if it is known and earlier, but never before start.
// deadline is zero unless the lease has ended.
func intervalEnd(start, now int64, wall, deadline time.Time) int64 {
	end := now
	if !deadline.IsZero() {
		// Both clocks are monotonic here: deadline carries time.Now's
		// monotonic reading, which Go takes from the same clock as hostNow
		// on Linux; the offset from wall carries it over.
		if d := now + int64(deadline.Sub(wall)); d < end {
			end = d
		}
	}
	return max(end, start)
}

// emit writes one event as a line, and keeps the first error.
func (r *Recorder) emit(ev event) {
	line := encode(ev)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writeLocked(line)
}

// encode returns ev as a line of the history.
func encode(ev event) []byte {
	line, err := json.Marshal(ev)
	if err != nil {
		panic(fmt.Sprintf("locktest: encoding %+v: %v", ev, err)) // plain fields: cannot fail
	}
	return append(line, '\n')
}

// writeLocked writes line to the history, with r.mu held.
func (r *Recorder) writeLocked(line []byte) {
	if r.err != nil {
		return
	}
	if _, err := r.w.Write(line); err != nil {
		r.err = fmt.Errorf("locktest: recording a history: %w", err)
	}
}

// Close writes the intervals still open as open (no end), which
// CheckOverlap treats as lasting for ever, and returns the first error met
// while writing. End every interval first to record its end. Intervals
// ended after Close are written too.
func (r *Recorder) Close() error {
	r.mu.Lock()
	var open []*RecordedLease
	for rl := range r.open {
		rl.ended = true
		open = append(open, rl)
	}
	clear(r.open)
	r.mu.Unlock()
	for _, rl := range open {
		rl.stop()
		r.emit(event{Kind: kindHold, Holder: rl.holder, Key: rl.key, Token: rl.token, Start: rl.start})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}
