package lock

import (
	"testing"
	"time"
)

func TestExponential(t *testing.T) {
	b := Exponential(10*time.Millisecond, time.Second)
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{
		{1, 10 * time.Millisecond},
		{2, 20 * time.Millisecond},
		{3, 40 * time.Millisecond},
		{7, 640 * time.Millisecond},
		{8, time.Second},
		{1000, time.Second},
	} {
		if got := b.Delay(tc.attempt); got != tc.want {
			t.Errorf("Delay(%d) = %v, want %v", tc.attempt, got, tc.want)
		}
	}
}

func TestConstant(t *testing.T) {
	b := Constant(50 * time.Millisecond)
	for attempt := 1; attempt < 5; attempt++ {
		if got := b.Delay(attempt); got != 50*time.Millisecond {
			t.Errorf("Delay(%d) = %v, want 50ms", attempt, got)
		}
	}
}

// TestJitter checks the jitter through its random input: it stays in
// [d, d+j) and covers the range.
func TestJitter(t *testing.T) {
	const d, j = 100 * time.Millisecond, 50 * time.Millisecond
	for _, tc := range []struct {
		r    uint64
		want time.Duration
	}{
		{0, d},
		{1, d + 1},
		{uint64(j) - 1, d + j - 1},
		{uint64(j), d},
		{^uint64(0), d + time.Duration(^uint64(0)%uint64(j))},
	} {
		if got := jitter(d, j, tc.r); got != tc.want {
			t.Errorf("jitter(%v, %v, %d) = %v, want %v", d, j, tc.r, got, tc.want)
		}
	}
	if got := jitter(d, 0, 12345); got != d {
		t.Errorf("jitter with j = 0 is %v, want %v", got, d)
	}
	s := settings{backoff: Constant(d), jitter: j}
	for range 1000 {
		if got := s.delay(1); got < d || got >= d+j {
			t.Fatalf("delay(1) = %v, want in [%v, %v)", got, d, d+j)
		}
	}
}

// TestDrift pins the validity arithmetic of RELIABILITY.md §2 (V-unit):
// TTL 1000ms with factor 0.01 gives a drift of 12ms.
func TestDrift(t *testing.T) {
	for _, tc := range []struct {
		ttl    time.Duration
		factor float64
		want   time.Duration
	}{
		{time.Second, 0.01, 12 * time.Millisecond},
		{10 * time.Second, 0.01, 102 * time.Millisecond},
		{time.Second, 0, 2 * time.Millisecond},
		{MaxTTL, 0.5, MaxTTL/2 + 2*time.Millisecond},
	} {
		if got := drift(tc.ttl, tc.factor); got != tc.want {
			t.Errorf("drift(%v, %v) = %v, want %v", tc.ttl, tc.factor, got, tc.want)
		}
	}
}
