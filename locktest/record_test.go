package locktest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/memory"
)

// recordTo returns a Recorder writing to a new file in dir, and a function
// that closes both and returns the file's path.
func recordTo(t *testing.T, dir, name string) (*Recorder, func() string) {
	t.Helper()
	path := filepath.Join(dir, name+".jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRecorder(f)
	return r, func() string {
		t.Helper()
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
}

// TestRecordingMerges: two Recorders, as two processes would, record the
// successive holders of one key and their writes to a fenced resource;
// the merged recording orders them by the shared clock, passes O1 and O3,
// and refuses the write a holder made after its release.
func TestRecordingMerges(t *testing.T) {
	dir := t.TempDir()
	ra, closeA := recordTo(t, dir, "a")
	rb, closeB := recordTo(t, dir, "b")
	m := lock.New(memory.New())
	defer m.Close()
	ctx := context.Background()

	var spans []*RecordedLease
	for i, r := range []*Recorder{ra, rb, ra} {
		l, err := m.Acquire(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		sp := r.Acquired([]string{"a", "b", "a2"}[i], l)
		sp.Write()
		sp.End()
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		spans = append(spans, sp)
	}
	spans[0].Write() // stale: two holders came after it
	open, err := m.Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	rb.Acquired("b-open", open) // left open: Close records it so
	rec, err := ReadRecording(closeA(), closeB())
	open.Release(ctx)
	if err != nil {
		t.Fatal(err)
	}

	var holders []string
	for _, iv := range rec.Intervals {
		holders = append(holders, iv.Holder)
	}
	if got := strings.Join(holders, ","); got != "a,b,a2,b-open" {
		t.Errorf("intervals in the order %s, want a,b,a2,b-open", got)
	}
	if last := rec.Intervals[len(rec.Intervals)-1]; !last.End.IsZero() {
		t.Errorf("interval left open recorded with end %v, want open", last.End)
	}
	if err := rec.CheckOverlap(); err != nil {
		t.Error(err)
	}
	if err := rec.CheckTokens(); err != nil {
		t.Error(err)
	}
	var s FencedStore
	if err := rec.CheckFencing(&s); err != nil {
		t.Error(err)
	}
	if s.Accepted() != 3 || s.Rejected() != 1 {
		t.Errorf("replay accepted %d and refused %d writes, want 3 and 1 (the stale one)", s.Accepted(), s.Rejected())
	}
	if got := rec.Replay(new(FencedStore)); len(got) != 4 || got[3] {
		t.Errorf("Replay = %v, want the last write (the stale one) refused", got)
	}
}

// TestRecordingCatchesOverlap: the negative control of the merge. Two
// processes that do not exclude each other (two memory backends) hold one
// key at once; O1 on the merged recording reports it, and the two
// holders' equal tokens are reported by O3.
func TestRecordingCatchesOverlap(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var leases []*lock.Lease
	var spans []*RecordedLease
	var closes []func() string
	for _, name := range []string{"p1", "p2"} {
		m := lock.New(memory.New())
		defer m.Close()
		l, err := m.Acquire(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
		r, closeR := recordTo(t, dir, name)
		closes = append(closes, closeR)
		sp := r.Acquired(name, l)
		sp.Write()
		spans = append(spans, sp)
	}
	for i, l := range leases {
		spans[i].End()
		l.Release(ctx)
	}
	rec, err := ReadRecording(closes[0](), closes[1]())
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.CheckOverlap(); err == nil || !strings.Contains(err.Error(), "held twice at once") {
		t.Errorf("CheckOverlap = %v, want the overlap across the two files", err)
	}
	if err := rec.CheckFencing(new(FencedStore)); err == nil || !strings.Contains(err.Error(), "presented by p1 and by p2") {
		t.Errorf("CheckFencing = %v, want the duplicate token", err)
	}
}

// TestCheckFencingRefusedHolder: a write refused while its writer's
// interval was open is a violation; one refused after it ended is stale,
// as fencing intends, and a write by no recorded holder is reported.
func TestCheckFencingRefusedHolder(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(0, int64(ms)*int64(time.Millisecond)) }
	rec := &Recording{
		Intervals: []Interval{
			{Key: "k", Holder: "a", Token: 1, Start: at(0), End: at(10)},
			{Key: "k", Holder: "b", Token: 2, Start: at(5), End: at(20)},
			{Key: "k", Holder: "c", Token: 3, Start: at(30), End: at(40)},
		},
		Writes: []Write{
			{Key: "k", Holder: "b", Token: 2, At: at(6)},
			{Key: "k", Holder: "a", Token: 1, At: at(8)}, // a's lease still open: violation
			{Key: "k", Holder: "c", Token: 3, At: at(31)},
			{Key: "k", Holder: "b", Token: 2, At: at(35)}, // stale: fine
			{Key: "k", Holder: "x", Token: 9, At: at(36)}, // nobody's
		},
	}
	err := rec.CheckFencing(new(FencedStore))
	if err == nil {
		t.Fatal("CheckFencing = nil, want two violations")
	}
	for _, want := range []string{"write by a with token 1 refused while its lease was held", "write by x with token 9 by no recorded holder"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFencing = %v, want %q in it", err, want)
		}
	}
	if strings.Contains(err.Error(), "write by b") {
		t.Errorf("CheckFencing = %v: reported b's stale write", err)
	}
}

// TestIntervalEnd: an interval ends when its end is observed, or at the
// lease's deadline when that came first (the holder was paused across it),
// never before it started.
func TestIntervalEnd(t *testing.T) {
	wall := time.Now()
	const now = int64(10 * time.Second)
	for _, c := range []struct {
		name     string
		start    int64
		deadline time.Time
		want     int64
	}{
		{"no deadline", 0, time.Time{}, now},
		{"deadline later", 0, wall.Add(time.Second), now},
		{"deadline passed while paused", 0, wall.Add(-3 * time.Second), now - int64(3*time.Second)},
		{"never before the start", now - int64(time.Second), wall.Add(-3 * time.Second), now - int64(time.Second)},
	} {
		if got := intervalEnd(c.start, now, wall, c.deadline); got != c.want {
			t.Errorf("%s: intervalEnd = %v, want %v", c.name, time.Duration(got), time.Duration(c.want))
		}
	}
}

// TestHostClockIsGoMonotonic: intervalEnd carries a lease's deadline over
// to host stamps through time.Now's monotonic reading, which is right only
// if both advance together. Each elapsed time of one clock must lie within
// the bracket of the other's readings around it.
func TestHostClockIsGoMonotonic(t *testing.T) {
	a0 := hostNow()
	w0 := time.Now()
	a1 := hostNow()
	time.Sleep(20 * time.Millisecond)
	b0 := hostNow()
	w1 := time.Now()
	b1 := hostNow()
	if d := int64(w1.Sub(w0)); d < b0-a1 || d > b1-a0 {
		t.Errorf("time.Now advanced %v while the host clock advanced between %v and %v",
			time.Duration(d), time.Duration(b0-a1), time.Duration(b1-a0))
	}
}

// TestRecordedLeaseEndsWithItsContext: a lease that ends unobserved by
// its holder (it expires) ends its interval when its context ends, and by
// its deadline.
func TestRecordedLeaseEndsWithItsContext(t *testing.T) {
	dir := t.TempDir()
	r, closeR := recordTo(t, dir, "expiry")
	m := lock.New(memory.New())
	defer m.Close()
	l, err := m.Acquire(context.Background(), "k", lock.WithTTL(50*time.Millisecond), lock.WithAutoExtend(false))
	if err != nil {
		t.Fatal(err)
	}
	sp := r.Acquired("h", l)
	<-l.Done()
	deadline, _ := l.Deadline()
	onHost := hostNow() - int64(time.Since(deadline)) // the deadline on the host clock
	sp.End()                                          // already ended: nothing changes
	rec, err := ReadRecording(closeR())
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Intervals) != 1 {
		t.Fatalf("%d intervals, want 1", len(rec.Intervals))
	}
	// Reading the two clocks one after the other costs microseconds.
	if end := rec.Intervals[0].End.UnixNano(); end == 0 || end > onHost+int64(time.Millisecond) {
		t.Errorf("interval ends %v after the deadline, want by it", time.Duration(end-onHost))
	}
}
