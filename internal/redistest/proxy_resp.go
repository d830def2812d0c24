package redistest

import (
	"bytes"
	"strconv"
)

const (
	maxLineKept = 64 // bytes of a line kept: enough for any header and a command name
	maxNameKept = 32 // bytes of a command name kept
)

// respScanner finds where RESP values end in a byte stream fed to it in
// arbitrary pieces, so that a proxy can count commands and replies exactly
// however TCP splits them. It keeps only the first bytes of each line and
// skips bulk payloads, so its memory is small and fixed.
//
// A client's stream (requests) holds commands: arrays of bulk strings, or
// inline commands, which are lines that do not start with '*'. A server's
// stream holds any RESP2 or RESP3 value; an attribute ('|') belongs to the
// value that follows it and is not counted. Streamed RESP3 strings and
// aggregates, which Redis never sends, and anything else it cannot parse
// stop the counting for the rest of the stream.
type respScanner struct {
	requests bool // a client's stream

	broken bool
	line   []byte  // the first bytes of the line being read
	bulk   int64   // bytes left of a bulk payload and its CRLF
	stack  []level // open aggregates, innermost last
	first  bool    // the next value is the first element of a command
	naming bool    // the bulk being skipped is a command name
	name   []byte

	// Output of the current feed.
	frames int
	names  []string
}

// level is an open aggregate: how many elements it still needs.
type level struct {
	left int64
	attr bool // an attribute map, which is not itself an element
}

// feed consumes b and returns how many top-level values ended in it and,
// for requests, their command names in upper case.
func (s *respScanner) feed(b []byte) (frames int, names []string) {
	s.frames, s.names = 0, nil
	for len(b) > 0 && !s.broken {
		if s.bulk > 0 {
			k := min(int64(len(b)), s.bulk)
			if s.naming {
				// The payload is what precedes the final CRLF.
				payload := min(k, max(s.bulk-2, 0))
				room := int64(maxNameKept - len(s.name))
				s.name = append(s.name, b[:min(payload, max(room, 0))]...)
			}
			b = b[k:]
			if s.bulk -= k; s.bulk == 0 {
				s.naming = false
				s.complete()
			}
			continue
		}
		i := bytes.IndexByte(b, '\n')
		part := b
		if i >= 0 {
			part = b[:i]
		}
		if room := maxLineKept - len(s.line); room > 0 {
			s.line = append(s.line, part[:min(room, len(part))]...)
		}
		if i < 0 {
			break
		}
		b = b[i+1:]
		s.process(bytes.TrimSuffix(s.line, []byte("\r")))
		s.line = s.line[:0]
	}
	return s.frames, s.names
}

// process handles one complete line outside a bulk payload.
func (s *respScanner) process(line []byte) {
	first := s.first
	s.first = false
	if s.requests && len(s.stack) == 0 && (len(line) == 0 || line[0] != '*') {
		// An inline command; Redis ignores blank lines.
		if f := bytes.Fields(line); len(f) > 0 {
			s.name = append(s.name[:0], f[0][:min(len(f[0]), maxNameKept)]...)
			s.complete()
		}
		return
	}
	if len(line) == 0 {
		s.broken = true
		return
	}
	n, err := strconv.ParseInt(string(line[1:]), 10, 64)
	switch line[0] {
	case '+', '-', ':', '_', ',', '#', '(':
		s.complete()
		return
	case '$', '!', '=':
		switch {
		case err != nil:
			s.broken = true
		case n < 0: // RESP2 null bulk string
			s.complete()
		default:
			s.bulk = n + 2
			s.naming = s.requests && first && len(s.stack) == 1
		}
		return
	case '*', '~', '>', '%', '|':
		if err != nil {
			s.broken = true
			return
		}
		attr := line[0] == '|'
		if line[0] == '%' || attr {
			n *= 2 // maps and attributes hold key-value pairs
		}
		switch {
		case n > 0:
			s.stack = append(s.stack, level{left: n, attr: attr})
			s.first = s.requests && len(s.stack) == 1
		case attr:
		case s.requests && len(s.stack) == 0:
			// Redis ignores an empty command array.
		default: // an empty or null aggregate
			s.complete()
		}
		return
	}
	s.broken = true
}

// complete records that a value has ended, and with it every aggregate
// that it completes.
func (s *respScanner) complete() {
	for len(s.stack) > 0 {
		top := &s.stack[len(s.stack)-1]
		if top.left--; top.left > 0 {
			return
		}
		attr := top.attr
		s.stack = s.stack[:len(s.stack)-1]
		if attr {
			return // the attributed value is still to come
		}
	}
	s.frames++
	if s.requests {
		s.names = append(s.names, string(bytes.ToUpper(s.name)))
		s.name = s.name[:0]
	}
}
