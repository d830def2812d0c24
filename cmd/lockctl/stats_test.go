package main

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestHistogramPercentileExact(t *testing.T) {
	t.Parallel()
	// Values below 256ns have buckets of their own, so nearest-rank
	// percentiles come out exact.
	var h histogram
	for v := 100; v >= 1; v-- { // order does not matter
		h.record(time.Duration(v))
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{
		{0.001, 1}, // the smallest rank is 1
		{1, 1},
		{10, 10},
		{50, 50},
		{50.5, 51},
		{99, 99},
		{99.9, 100},
		{100, 100},
	}
	for _, tt := range tests {
		if got := h.percentile(tt.p); got != tt.want {
			t.Errorf("percentile(%v) of 1..100ns = %v, want %v", tt.p, got, tt.want)
		}
	}
	if h.count != 100 || h.max != 100 || h.mean() != 50 { // 50.5 truncated
		t.Errorf("count, max, mean = %d, %v, %v; want 100, 100ns, 50ns", h.count, h.max, h.mean())
	}
}

func TestHistogramPercentileSmall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", []time.Duration{42}, 50, 42},
		{"one p100", []time.Duration{42}, 100, 42},
		{"negative is zero", []time.Duration{-5}, 50, 0},
		{"two p50", []time.Duration{10, 20}, 50, 10},
		{"two p51", []time.Duration{10, 20}, 51, 20},
		{"outlier p99", append(repeat(7, 99), time.Second), 99, 7},
		{"outlier p100", append(repeat(7, 99), time.Second), 100, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, v := range tt.values {
				h.record(v)
			}
			if got := h.percentile(tt.p); got != tt.want {
				t.Errorf("percentile(%v) of %v = %v, want %v", tt.p, tt.values, got, tt.want)
			}
		})
	}
}

func repeat(v time.Duration, n int) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func TestHistogramPercentileLarge(t *testing.T) {
	t.Parallel()
	// 1µs, 2µs, ..., 1000µs: above 256ns a percentile is the middle of its
	// bucket, within 1/256 of the true value, and the max is exact.
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{
		{50, 500 * time.Microsecond},
		{90, 900 * time.Microsecond},
		{99, 990 * time.Microsecond},
		{100, 1000 * time.Microsecond},
	} {
		got := h.percentile(tt.p)
		if relErr := math.Abs(float64(got-tt.want)) / float64(tt.want); relErr > 1.0/256 {
			t.Errorf("percentile(%v) = %v, want %v within 1/256 (error %.4f)", tt.p, got, tt.want, relErr)
		}
	}
	if h.max != time.Millisecond {
		t.Errorf("max = %v, want 1ms", h.max)
	}
	if got := h.percentile(100); got > h.max {
		t.Errorf("percentile(100) = %v, more than max %v", got, h.max)
	}
}

func TestHistogramMerge(t *testing.T) {
	t.Parallel()
	var all, a, b histogram
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 10000 {
		v := time.Duration(r.Int64N(int64(10 * time.Millisecond)))
		all.record(v)
		if i%3 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	a.merge(&b)
	if a.summary() != all.summary() {
		t.Errorf("merged summary = %+v, want %+v", a.summary(), all.summary())
	}
}

func TestBucket(t *testing.T) {
	t.Parallel()
	values := []uint64{0, 1, subCount - 1, subCount, subCount + 1, 2*subCount - 1, 2 * subCount, 1000, 1 << 20, 1<<40 + 12345, 1<<62 - 1, 1 << 62, math.MaxInt64}
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		values = append(values, r.Uint64N(math.MaxInt64)>>r.UintN(63))
	}
	for _, v := range values {
		row, col := bucket(v)
		lo, hi := bucketRange(row, col)
		if v < lo || v > hi {
			t.Errorf("bucket(%d) = [%d, %d], which does not hold it", v, lo, hi)
		}
		if width := hi - lo + 1; width > max(1, v/subCount) {
			t.Errorf("bucket(%d) = [%d, %d]: %d wide, want at most %d", v, lo, hi, width, max(1, v/subCount))
		}
		if row >= len(histogram{}.rows) || col < 0 || col >= subCount {
			t.Errorf("bucket(%d) = row %d, column %d: out of range", v, row, col)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0ns"},
		{999, "999ns"},
		{1234, "1.23µs"},
		{2500 * time.Microsecond, "2.50ms"},
		{5*time.Second + 1234*time.Microsecond, "5.001s"},
	} {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%d) = %q, want %q", int64(tt.d), got, tt.want)
		}
	}
}
