package lockconfig

import (
	"math"
	"strings"
	"time"
)

// Two kinds of duration fields exist. The seed's own fields (delay,
// retryDelay, retryJitter) are JavaScript numbers of milliseconds, and stay
// so: 100 is 100ms. Fields that only this package reads (ttl, nodeTimeout)
// take Go duration strings only, because a bare number there has no unit
// anyone agreed on: 5000 read as time.Duration would be 5µs, read as
// seconds more than an hour. Both kinds accept strings such as "1.5s".

// unitHint ends the error for a duration string without a unit.
const unitHint = `a duration needs a unit, like "5s"`

// millis reads one of the seed's millisecond fields: a whole number of
// milliseconds, or a duration string. It must not be negative.
func (v value) millis() (time.Duration, error) {
	if v.kind() == "string" {
		return v.durationString()
	}
	if v.kind() != "number" {
		return 0, v.wrongKind(`milliseconds or a duration string like "100ms"`)
	}
	ms, err := v.integer()
	if err != nil {
		return 0, v.bad(`must be whole milliseconds, or a duration string like "1.5ms"`)
	}
	if ms < 0 {
		return 0, v.bad("must not be negative")
	}
	if int64(ms) > math.MaxInt64/int64(time.Millisecond) {
		return 0, v.bad("is out of range")
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// duration reads a field that only a duration string may give.
func (v value) duration() (time.Duration, error) {
	if v.kind() == "number" {
		return 0, v.bad(unitHint)
	}
	if v.kind() != "string" {
		return 0, v.wrongKind(`a duration string like "5s"`)
	}
	return v.durationString()
}

// durationString reads a duration string, not negative.
func (v value) durationString() (time.Duration, error) {
	s, err := v.str()
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	switch {
	case err != nil && isNumber(s):
		return 0, v.bad(unitHint)
	case err != nil:
		return 0, v.bad(`must be a duration like "1.5s" or "100ms"`)
	case d < 0:
		return 0, v.bad("must not be negative")
	}
	return d, nil
}

// isNumber reports whether s is a plain decimal number, such as "5000".
func isNumber(s string) bool {
	s = strings.TrimSpace(s)
	digits := 0
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '.' || (i == 0 && (r == '-' || r == '+')):
		default:
			return false
		}
	}
	return digits > 0
}
