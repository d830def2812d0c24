package locktest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A Write is a write to a fenced resource, recorded by
// RecordedLease.Write.
type Write struct {
	Key    string
	Holder string
	Token  uint64
	At     time.Time // when it was made
}

// A Recording is the merged content of histories written by Recorders,
// typically one per process of one host. Its times are the host's clock
// stamps read as time.Unix(0, stamp): they compare with one another, not
// with time.Now.
type Recording struct {
	Intervals []Interval // in the order they started
	Writes    []Write    // in the order they were made
}

// ReadRecording reads and merges the histories that Recorders wrote to the
// files at paths.
func ReadRecording(paths ...string) (*Recording, error) {
	rec := new(Recording)
	for _, path := range paths {
		if err := rec.read(path); err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(rec.Intervals, func(a, b Interval) int { return a.Start.Compare(b.Start) })
	slices.SortStableFunc(rec.Writes, func(a, b Write) int { return a.At.Compare(b.At) })
	return rec, nil
}

// read adds the events of the file at path.
func (rec *Recording) read(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("locktest: reading a history: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("locktest: %s:%d: %w", path, n, err)
		}
		switch ev.Kind {
		case kindHold:
			iv := Interval{Key: ev.Key, Holder: ev.Holder, Token: ev.Token, Start: time.Unix(0, ev.Start)}
			if ev.End != 0 {
				iv.End = time.Unix(0, ev.End)
			}
			rec.Intervals = append(rec.Intervals, iv)
		case kindWrite:
			rec.Writes = append(rec.Writes, Write{Key: ev.Key, Holder: ev.Holder, Token: ev.Token, At: time.Unix(0, ev.At)})
		default:
			return fmt.Errorf("locktest: %s:%d: unknown event kind %q", path, n, ev.Kind)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("locktest: reading %s: %w", path, err)
	}
	return nil
}

// CheckOverlap checks oracle O1 on the recording's intervals; see the
// function CheckOverlap.
func (rec *Recording) CheckOverlap() error { return CheckOverlap(rec.Intervals) }

// CheckTokens checks that tokens strictly increase in the order of
// acquisition (oracle O3); see the function CheckTokens.
func (rec *Recording) CheckTokens() error { return CheckTokens(rec.Intervals) }

// Replay presents the recording's writes to s in the order they were made,
// as one fenced resource shared by every process would have seen them, and
// reports for each write whether s accepted it.
func (rec *Recording) Replay(s *FencedStore) []bool {
	accepted := make([]bool, len(rec.Writes))
	for i, w := range rec.Writes {
		accepted[i] = s.Write(w.Key, w.Holder, w.Token)
	}
	return accepted
}

// CheckFencing replays the recording's writes into s (oracle O3), and
// returns an error if s refused a write made while the writer's interval
// was open, or if two holders presented the same token for one key. Either
// means that a holder was refused while it held the key: a later holder had
// a greater token before this one's lease ended, or the same token.
// A write made after its interval ended is stale: refusing it is what
// fencing is for, and accepting it is no violation either (no later holder
// had written yet). s's counts tell how many writes it accepted and
// refused.
func (rec *Recording) CheckFencing(s *FencedStore) error {
	type holding struct {
		key, holder string
		token       uint64
	}
	ends := make(map[holding]Interval)
	for _, iv := range rec.Intervals {
		ends[holding{iv.Key, iv.Holder, iv.Token}] = iv
	}
	var errs []error
	n := 0
	for i, ok := range rec.Replay(s) {
		w := rec.Writes[i]
		iv, known := ends[holding{w.Key, w.Holder, w.Token}]
		var problem string
		switch {
		case !known:
			problem = "by no recorded holder"
		case ok:
			continue
		case iv.End.IsZero() || !w.At.After(iv.End):
			last, _ := s.Last(w.Key)
			problem = fmt.Sprintf("refused while its lease was held (last accepted token %d)", last)
		default:
			continue // stale, and refused
		}
		n++
		if len(errs) < maxReported {
			errs = append(errs, fmt.Errorf("locktest: key %q: write by %s with token %d %s",
				w.Key, w.Holder, w.Token, problem))
		}
	}
	return errors.Join(violations("fencing violations", n, errs), s.Check())
}

// HistoryDirEnv names the environment variable holding the directory where
// HistoryFile keeps the histories of failed tests.
const HistoryDirEnv = "LOCK_HISTORY_DIR"

// HistoryFile returns the path of a new file in a temporary directory, for
// a Recorder, named after t, name and the seed of the test's random
// schedule. If t fails and $LOCK_HISTORY_DIR is set, the file is copied
// there when t ends, so that the failed run can be examined and its seed
// replayed.
func HistoryFile(t testing.TB, name string, seed uint64) string {
	t.Helper()
	base := fmt.Sprintf("%s-%s-seed%d.jsonl", t.Name(), name, seed)
	base = strings.Map(func(r rune) rune {
		if r == '/' || r == os.PathSeparator || r == ' ' {
			return '_'
		}
		return r
	}, base)
	path := filepath.Join(t.TempDir(), base)
	t.Cleanup(func() {
		dir := os.Getenv(HistoryDirEnv)
		if !t.Failed() || dir == "" {
			return
		}
		b, err := os.ReadFile(path)
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, base), b, 0o644)
		}
		if err != nil {
			t.Logf("keeping the history %s: %v", base, err)
			return
		}
		t.Logf("history kept in %s", filepath.Join(dir, base))
	})
	return path
}
