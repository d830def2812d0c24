package locktest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// at returns an interval of key by holder with token, from a to b
// milliseconds after t0; b < 0 makes it open.
func at(t0 time.Time, key, holder string, token uint64, a, b int) Interval {
	iv := Interval{Key: key, Holder: holder, Token: token, Start: t0.Add(time.Duration(a) * time.Millisecond)}
	if b >= 0 {
		iv.End = t0.Add(time.Duration(b) * time.Millisecond)
	}
	return iv
}

func TestCheckOverlap(t *testing.T) {
	t0 := time.Now()
	tests := []struct {
		name string
		ivs  []Interval
		want []string // substrings of the error; nil: no error
	}{
		{"empty", nil, nil},
		{"sequential", []Interval{at(t0, "k", "a", 1, 0, 10), at(t0, "k", "b", 2, 10, 20), at(t0, "k", "a", 3, 25, 30)}, nil},
		{"unsorted", []Interval{at(t0, "k", "b", 2, 10, 20), at(t0, "k", "a", 1, 0, 10)}, nil},
		{"other keys overlap freely", []Interval{at(t0, "k", "a", 1, 0, 10), at(t0, "j", "b", 1, 5, 15)}, nil},
		{"overlap", []Interval{at(t0, "k", "a", 1, 0, 10), at(t0, "k", "b", 2, 9, 20)}, []string{`key "k" held twice`, "a [", "b ["}},
		{"same holder", []Interval{at(t0, "k", "a", 1, 0, 10), at(t0, "k", "a", 2, 5, 20)}, []string{"held twice"}},
		{"nested in a long one", []Interval{at(t0, "k", "a", 1, 0, 100), at(t0, "k", "b", 2, 10, 20), at(t0, "k", "c", 3, 30, 40)}, []string{"b [", "c [", "a ["}},
		{"open", []Interval{at(t0, "k", "a", 1, 0, -1), at(t0, "k", "b", 2, 50, 60)}, []string{"open"}},
		{"open last", []Interval{at(t0, "k", "a", 1, 0, 10), at(t0, "k", "b", 2, 20, -1)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckOverlap(tt.ivs)
			if tt.want == nil {
				if err != nil {
					t.Errorf("CheckOverlap() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckOverlap() = nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckOverlap() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestCheckOverlapCounts(t *testing.T) {
	t0 := time.Now()
	var ivs []Interval
	for i := range 30 {
		ivs = append(ivs, at(t0, "k", "h", uint64(i+1), i, i+5))
	}
	err := CheckOverlap(ivs)
	if err == nil {
		t.Fatal("CheckOverlap() = nil, want an error")
	}
	if n := strings.Count(err.Error(), "held twice"); n != maxReported {
		t.Errorf("CheckOverlap() describes %d violations, want %d", n, maxReported)
	}
	if !strings.Contains(err.Error(), "29 overlapping intervals in all") {
		t.Errorf("CheckOverlap() = %q, want the total of 29", err)
	}
}

func TestCheckTokens(t *testing.T) {
	t0 := time.Now()
	tests := []struct {
		name string
		ivs  []Interval
		want string // substring of the error; "": no error
	}{
		{"increasing", []Interval{at(t0, "k", "a", 1, 0, 1), at(t0, "k", "b", 5, 2, 3), at(t0, "k", "a", 9, 4, 5)}, ""},
		{"per key", []Interval{at(t0, "k", "a", 5, 0, 1), at(t0, "j", "b", 1, 2, 3)}, ""},
		{"unknown skipped", []Interval{at(t0, "k", "a", 5, 0, 1), at(t0, "k", "b", 0, 2, 3), at(t0, "k", "c", 6, 4, 5)}, ""},
		{"in start order", []Interval{at(t0, "k", "b", 2, 2, 3), at(t0, "k", "a", 1, 0, 1)}, ""},
		{"decrease", []Interval{at(t0, "k", "a", 5, 0, 1), at(t0, "k", "b", 4, 2, 3)}, "a smaller token"},
		{"duplicate", []Interval{at(t0, "k", "a", 5, 0, 1), at(t0, "k", "b", 5, 2, 3)}, "the same token"},
		{"decrease past unknown", []Interval{at(t0, "k", "a", 5, 0, 1), at(t0, "k", "b", 0, 2, 3), at(t0, "k", "c", 3, 4, 5)}, "a smaller token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckTokens(tt.ivs)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CheckTokens() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("CheckTokens() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestHistorySpan checks that an interval ends at End or when its context
// is done, whichever comes first, and that End is idempotent.
func TestHistorySpan(t *testing.T) {
	var h History
	ctx, cancel := context.WithCancel(context.Background())
	sp := h.Start(ctx, "k", "a", 1)
	cancel()
	// The context's end is recorded by a context.AfterFunc: wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for h.Intervals()[0].End.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("the end of the span's context was not recorded")
		}
		<-time.After(time.Millisecond)
	}
	end := h.Intervals()[0].End
	sp.End()
	sp.End()
	if got := h.Intervals()[0].End; !got.Equal(end) {
		t.Errorf("End after the context's end moved the interval's end by %v", got.Sub(end))
	}

	sp = h.Start(context.Background(), "k", "b", 2)
	if !h.Intervals()[1].End.IsZero() {
		t.Errorf("a new span is closed")
	}
	sp.End()
	end = h.Intervals()[1].End
	if end.IsZero() {
		t.Fatalf("End did not close the span")
	}
	sp.End()
	if got := h.Intervals()[1].End; !got.Equal(end) {
		t.Errorf("a second End moved the interval's end")
	}
	h.Add(at(time.Now(), "k", "c", 3, 0, -1))
	if h.Len() != 3 {
		t.Errorf("Len() = %d, want 3", h.Len())
	}
	if err := h.CheckOverlap(); err != nil {
		t.Errorf("CheckOverlap() = %v", err)
	}
	if err := h.CheckTokens(); err != nil {
		t.Errorf("CheckTokens() = %v", err)
	}
}

// TestHistoryConcurrent records from many goroutines (run with -race).
func TestHistoryConcurrent(t *testing.T) {
	var h History
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for j := range 50 {
				sp := h.Start(ctx, "k", "h", uint64(i*100+j))
				sp.End()
				_ = h.Intervals()
			}
		})
	}
	wg.Wait()
	if h.Len() != 400 {
		t.Errorf("Len() = %d, want 400", h.Len())
	}
}
