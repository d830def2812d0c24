package locktest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/leaselock/lock"
)

// maxReported is how many violations a check describes one by one.
const maxReported = 10

// An Interval is the time during which one holder believed it held a key:
// from when Acquire returned to when the holder called Release or observed
// the end of the lease's context, whichever came first (oracle O1).
type Interval struct {
	Key    string    // the backend key, namespace included
	Holder string    // who held it, such as a goroutine or process name
	Token  uint64    // the lease's fencing token; 0 if unknown, as under WithLock
	Start  time.Time // when Acquire returned
	End    time.Time // when Release was called or the end observed; zero while open
}

// string describes the interval, with its times as offsets from origin.
func (iv Interval) string(origin time.Time) string {
	end := "open"
	if !iv.End.IsZero() {
		end = iv.End.Sub(origin).String()
	}
	return fmt.Sprintf("%s [%v, %s] token %d", iv.Holder, iv.Start.Sub(origin), end, iv.Token)
}

// A History records the intervals during which leases were held, for
// CheckOverlap and CheckTokens. Its times come from time.Now, whose
// differences within one process use the monotonic clock; intervals
// recorded in other processes can be added with Add.
//
// The zero History is empty and ready to use. A History is safe for
// concurrent use.
type History struct {
	mu        sync.Mutex
	intervals []Interval
}

// A Span is an open interval of a History, ended by End or by the end of the
// lease's context, whichever comes first.
type Span struct {
	h    *History
	i    int
	stop func() bool
}

// Acquired opens the interval of lease l held by holder. Call it as soon as
// Acquire returns, and call End on the result just before Release. The
// interval also ends when l's context is observed done.
func (h *History) Acquired(holder string, l *lock.Lease) *Span {
	return h.Start(l.Context(), l.Key(), holder, l.Token())
}

// Start opens an interval of key held by holder with token (0 if unknown),
// which ends when ctx is done or End is called. It is Acquired for code that
// sees only a lease's context, such as the function run by lock.WithLock.
func (h *History) Start(ctx context.Context, key, holder string, token uint64) *Span {
	now := time.Now()
	h.mu.Lock()
	sp := &Span{h: h, i: len(h.intervals)}
	h.intervals = append(h.intervals, Interval{Key: key, Holder: holder, Token: token, Start: now})
	h.mu.Unlock()
	sp.stop = context.AfterFunc(ctx, sp.end)
	return sp
}

// End ends the interval, if the end of its context has not ended it before.
// Call it just before Release. End is idempotent.
func (sp *Span) End() {
	sp.end()
	sp.stop()
}

// end ends the interval now, unless it ended earlier.
func (sp *Span) end() {
	now := time.Now()
	sp.h.mu.Lock()
	defer sp.h.mu.Unlock()
	iv := &sp.h.intervals[sp.i]
	if iv.End.IsZero() || now.Before(iv.End) {
		iv.End = now
	}
}

// Add records an interval observed elsewhere, such as in another process.
// An interval with a zero End is open: it lasts for ever.
func (h *History) Add(iv Interval) {
	h.mu.Lock()
	h.intervals = append(h.intervals, iv)
	h.mu.Unlock()
}

// Intervals returns a copy of the intervals recorded so far, in the order
// they were opened.
func (h *History) Intervals() []Interval {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.intervals)
}

// Len returns the number of intervals recorded so far.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.intervals)
}

// CheckOverlap checks oracle O1 on h's intervals; see the function
// CheckOverlap.
func (h *History) CheckOverlap() error { return CheckOverlap(h.Intervals()) }

// CheckTokens checks oracle O3 on h's intervals; see the function
// CheckTokens.
func (h *History) CheckTokens() error { return CheckTokens(h.Intervals()) }

// CheckOverlap checks that no two intervals of one key intersect (oracle
// O1): at no instant did two holders, or two leases of one holder, believe
// they held the key. Intervals that only touch do not intersect; an open
// interval lasts for ever. It returns nil, or an error describing the first
// violations and counting them all.
func CheckOverlap(intervals []Interval) error {
	var errs []error
	n := 0
	forEachKey(intervals, func(key string, ivs []Interval, origin time.Time) {
		// Sorted by start: an interval intersects an earlier one if and only
		// if it starts before the latest end so far.
		var last Interval // the interval with the latest end so far
		for i, iv := range ivs {
			if i > 0 && (last.End.IsZero() || iv.Start.Before(last.End)) {
				n++
				if len(errs) < maxReported {
					errs = append(errs, fmt.Errorf("locktest: key %q held twice at once: %s and %s",
						key, last.string(origin), iv.string(origin)))
				}
			}
			if i == 0 || (!last.End.IsZero() && (iv.End.IsZero() || iv.End.After(last.End))) {
				last = iv
			}
		}
	})
	return violations("overlapping intervals", n, errs)
}

// CheckTokens checks that, per key, the fencing tokens of the intervals
// strictly increase in the order the intervals started (the order of
// acquisition), with no token given twice (oracle O3). Intervals with token
// 0, whose token is unknown, are skipped. It returns nil, or an error
// describing the first violations and counting them all.
func CheckTokens(intervals []Interval) error {
	var errs []error
	n := 0
	forEachKey(intervals, func(key string, ivs []Interval, origin time.Time) {
		var prev Interval
		for _, iv := range ivs {
			if iv.Token == 0 {
				continue
			}
			if prev.Token != 0 && iv.Token <= prev.Token {
				n++
				what := "a smaller token"
				if iv.Token == prev.Token {
					what = "the same token"
				}
				if len(errs) < maxReported {
					errs = append(errs, fmt.Errorf("locktest: key %q: %s after %s, has %s",
						key, iv.string(origin), prev.string(origin), what))
				}
			}
			prev = iv
		}
	})
	return violations("token violations", n, errs)
}

// forEachKey calls f for each key with its intervals sorted by start, and
// the earliest start of all intervals, which messages use as time zero.
func forEachKey(intervals []Interval, f func(key string, ivs []Interval, origin time.Time)) {
	if len(intervals) == 0 {
		return
	}
	byKey := make(map[string][]Interval)
	origin := intervals[0].Start
	for _, iv := range intervals {
		byKey[iv.Key] = append(byKey[iv.Key], iv)
		if iv.Start.Before(origin) {
			origin = iv.Start
		}
	}
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		ivs := byKey[k]
		slices.SortStableFunc(ivs, func(a, b Interval) int { return a.Start.Compare(b.Start) })
		f(k, ivs, origin)
	}
}

// violations joins the first errors of a check, and says how many there
// were in all.
func violations(what string, n int, errs []error) error {
	if n == 0 {
		return nil
	}
	if n > len(errs) {
		errs = append(errs, fmt.Errorf("locktest: %d %s in all", n, what))
	}
	return errors.Join(errs...)
}
