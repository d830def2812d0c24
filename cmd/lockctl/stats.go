package main

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the precision of a histogram: each power of two is split into
// 1<<subBits buckets, so a recorded duration is known to within 1/128 of its
// value (0.8%), and durations below 256ns exactly.
const subBits = 7

const subCount = 1 << subBits

// A histogram counts durations in buckets whose width grows with the value,
// so that millions of samples cost a few kilobytes and percentiles are read
// with a bounded relative error. Rows of buckets are allocated when first
// used. The zero histogram is empty and ready to use. A histogram is not
// safe for concurrent use: each worker records into its own, and they are
// merged at the end.
type histogram struct {
	// rows[0] counts the values below subCount, one per nanosecond. rows[r],
	// r >= 1, counts the values in [subCount<<(r-1), subCount<<r), in
	// buckets 1<<(r-1) wide.
	rows  [64 - subBits]*[subCount]uint64
	count uint64
	max   time.Duration
	sum   float64 // in nanoseconds, for the mean
}

// bucket returns the row and column of the bucket that counts v >= 0.
func bucket(v uint64) (row, col int) {
	if v < subCount {
		return 0, int(v)
	}
	shift := bits.Len64(v) - 1 - subBits
	return shift + 1, int(v>>shift) - subCount
}

// bucketRange returns the smallest and largest values counted by a bucket.
func bucketRange(row, col int) (lo, hi uint64) {
	if row == 0 {
		return uint64(col), uint64(col)
	}
	shift := row - 1
	lo = uint64(subCount+col) << shift
	return lo, lo + 1<<shift - 1
}

// record adds one duration; negative durations count as zero.
func (h *histogram) record(d time.Duration) {
	d = max(d, 0)
	row, col := bucket(uint64(d))
	if h.rows[row] == nil {
		h.rows[row] = new([subCount]uint64)
	}
	h.rows[row][col]++
	h.count++
	h.sum += float64(d)
	h.max = max(h.max, d)
}

// merge adds the samples of o to h.
func (h *histogram) merge(o *histogram) {
	for r, row := range o.rows {
		if row == nil {
			continue
		}
		if h.rows[r] == nil {
			h.rows[r] = new([subCount]uint64)
		}
		for c, n := range row {
			h.rows[r][c] += n
		}
	}
	h.count += o.count
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// percentile returns the nearest-rank p-th percentile, 0 < p <= 100: the
// smallest recorded value that at least p percent of the samples do not
// exceed. Values below 256ns are exact; larger ones are the middle of their
// bucket, within 0.4% of the true value, and never more than the maximum.
// An empty histogram returns 0.
func (h *histogram) percentile(p float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	// p*count first: for whole p and count a multiple of 100, as in
	// p99 of 100 samples, the rank is then exact.
	rank := uint64(math.Ceil(p * float64(h.count) / 100))
	rank = min(max(rank, 1), h.count)
	var seen uint64
	for r, row := range h.rows {
		if row == nil {
			continue
		}
		for c, n := range row {
			seen += n
			if seen >= rank {
				lo, hi := bucketRange(r, c)
				return min(time.Duration(lo+(hi-lo)/2), h.max)
			}
		}
	}
	return h.max // not reached: the counts add up to h.count
}

// mean returns the average of the samples, or 0 if there are none.
func (h *histogram) mean() time.Duration {
	if h.count == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.count))
}

// summary is what a report shows of a histogram.
type summary struct {
	Count uint64        `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

func (h *histogram) summary() summary {
	return summary{
		Count: h.count,
		Mean:  h.mean(),
		P50:   h.percentile(50),
		P99:   h.percentile(99),
		Max:   h.max,
	}
}
