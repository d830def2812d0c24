package lockconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/leaselock/lock"
)

// This file reads JSON values one field at a time, so that every error
// names the exact path of the field (encoding/json names neither array
// indexes nor unknown fields' parents), so that duplicate and unknown
// fields are caught, and so that no value that may be a secret is shown.

var (
	errMissing = errors.New("is missing")
	errBadHost = errors.New("must be a host name or IP address, without scheme, user or port")
)

// A value is one JSON value of the config and the path it was read from,
// such as "lockConfig.nodes[1].port".
type value struct {
	path   string
	raw    json.RawMessage
	secret bool // never show it in an error
}

// kind returns the JSON kind of v: "object", "array", "string", "number",
// "boolean" or "null".
func (v value) kind() string {
	raw := bytes.TrimLeft(v.raw, " \t\r\n")
	if len(raw) == 0 {
		return "null"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// show returns v as an error may show it: numbers and booleans as they
// are, strings quoted and cut short, and only the kind of a secret, an
// object or an array.
func (v value) show() string {
	k := v.kind()
	switch {
	case v.secret, k == "object", k == "array":
		return "(" + article(k) + ")"
	case k == "string":
		var s string
		_ = json.Unmarshal(v.raw, &s)
		return quote(s)
	}
	return string(bytes.TrimSpace(v.raw))
}

func article(kind string) string {
	if kind == "object" || kind == "array" {
		return "an " + kind
	}
	return "a " + kind
}

// none is the value shown for a missing field.
const none = "(none)"

// quote returns s quoted for an error, cut to 64 bytes. A string with an @
// is not shown: it may be a URL with a password, written where it does not
// belong.
func quote(s string) string {
	const max = 64
	if strings.Contains(s, "@") {
		return "(not shown: it may hold a password)"
	}
	if len(s) > max {
		return fmt.Sprintf("%q... (%d bytes)", s[:max], len(s))
	}
	return strconv.Quote(s)
}

// bad returns an error about v that matches lock.ErrInvalid.
func (v value) bad(reason string) error {
	return lock.Invalid(v.path, v.show(), reason)
}

// wrongKind returns the error for a value of the wrong JSON kind.
func (v value) wrongKind(want string) error {
	return v.bad("must be " + want + ", not " + article(v.kind()))
}

func (v value) str() (string, error) {
	if v.kind() != "string" {
		return "", v.wrongKind("a string")
	}
	var s string
	if err := json.Unmarshal(v.raw, &s); err != nil {
		return "", v.wrongKind("a string")
	}
	return s, nil
}

func (v value) boolean() (bool, error) {
	var b bool
	if v.kind() != "boolean" || json.Unmarshal(v.raw, &b) != nil {
		return false, v.wrongKind("true or false")
	}
	return b, nil
}

// number reads a finite JSON number.
func (v value) number() (float64, error) {
	if v.kind() != "number" {
		return 0, v.wrongKind("a number")
	}
	f, err := strconv.ParseFloat(string(bytes.TrimSpace(v.raw)), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, v.bad("is out of range")
	}
	return f, nil
}

// maxExact is the largest integer a JavaScript number holds exactly: the
// seed's configs are JavaScript values.
const maxExact = 1<<53 - 1

// integer reads a JSON number that is a whole number, such as 3, 3.0 or
// 3e0, all the same number in JavaScript.
func (v value) integer() (int, error) {
	if v.kind() != "number" {
		return 0, v.wrongKind("a whole number")
	}
	text := string(bytes.TrimSpace(v.raw))
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		if n < math.MinInt || n > math.MaxInt {
			return 0, v.bad("is out of range")
		}
		return int(n), nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != math.Trunc(f) || math.IsInf(f, 0) {
		return 0, v.bad("must be a whole number")
	}
	if math.Abs(f) > maxExact {
		return 0, v.bad("is out of range")
	}
	return int(f), nil
}

// elements reads a JSON array.
func (v value) elements() ([]value, error) {
	if v.kind() != "array" {
		return nil, v.wrongKind("an array")
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(v.raw, &raws); err != nil {
		return nil, v.wrongKind("an array")
	}
	vs := make([]value, len(raws))
	for i, r := range raws {
		vs[i] = value{path: fmt.Sprintf("%s[%d]", v.path, i), raw: r}
	}
	return vs, nil
}

// An object is a JSON object whose fields are taken one by one; rest then
// reports the first field nobody took.
type object struct {
	path   string // of the object itself, for errors about it
	prefix string // put before field names: path, or "" at the top
	fields []field
	known  []string          // the names asked for, for hints
	hints  map[string]string // why some unknown fields are refused
}

type field struct {
	name  string
	val   value
	taken bool
}

// object reads v as a JSON object. A name given twice is an error:
// encoding/json would keep the last silently, JavaScript too, and either
// may not be what the author meant.
func (v value) object() (*object, error) {
	return v.objectAt(v.path)
}

// objectAt is object with the fields' paths below prefix.
func (v value) objectAt(prefix string) (*object, error) {
	if v.kind() != "object" {
		return nil, v.wrongKind("an object")
	}
	o := &object{path: v.path, prefix: prefix}
	seen := make(map[string]bool)
	dec := json.NewDecoder(bytes.NewReader(v.raw))
	if _, err := dec.Token(); err != nil { // the '{'
		return nil, v.wrongKind("an object")
	}
	for dec.More() {
		tok, err := dec.Token()
		name, ok := tok.(string)
		if err != nil || !ok {
			return nil, v.wrongKind("an object")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, v.wrongKind("an object")
		}
		p := join(prefix, name)
		if seen[name] {
			return nil, lock.Invalid(p, "(given twice)", "must be given once")
		}
		seen[name] = true
		o.fields = append(o.fields, field{name: name, val: value{path: p, raw: raw}})
	}
	return o, nil
}

// join returns the path of field name in an object at prefix.
func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// take returns the field name, and whether it is present and not null:
// JSON made from a JavaScript object may hold nulls for absent settings.
func (o *object) take(name string) (value, bool) {
	o.known = append(o.known, name)
	for i := range o.fields {
		f := &o.fields[i]
		if f.name == name {
			f.taken = true
			return f.val, f.val.kind() != "null"
		}
	}
	return value{path: join(o.prefix, name)}, false
}

// has reports whether field name is present and not null, without taking it.
func (o *object) has(name string) bool {
	for _, f := range o.fields {
		if f.name == name {
			return f.val.kind() != "null"
		}
	}
	return false
}

// rest reports the first field that was not taken. Its value is never
// shown: a misspelt "pasword" holds a password.
func (o *object) rest() error {
	for _, f := range o.fields {
		if f.taken {
			continue
		}
		reason := "unknown field"
		if h, ok := o.hints[f.name]; ok {
			reason += "; " + h
		}
		for _, k := range o.known {
			if strings.EqualFold(k, f.name) {
				reason = fmt.Sprintf("unknown field; did you mean %q?", k)
			}
		}
		return lock.Invalid(f.val.path, "("+article(f.val.kind())+")", reason)
	}
	return nil
}

// tlsHints explain why fields of Node's tls.connect options, which a seed
// config may pass to ioredis, are refused.
var tlsHints = map[string]string{
	"ca":                 `give a file name in "caFile"`,
	"cert":               `give a file name in "certFile"`,
	"key":                `give a file name in "keyFile"`,
	"rejectUnauthorized": "certificate verification cannot be turned off",
}

// connectionHints explain why fields of ioredis or node-redis options,
// which a seed config may hold, are refused.
var connectionHints = map[string]string{
	"auth_pass": `use "password"`,
	"keyPrefix": "it would change the keys that Node services lock; use the namespace",
	"prefix":    "it would change the keys that Node services lock; use the namespace",
	"path":      "Unix sockets are not supported",
	"sentinels": "Sentinel is not supported here; build rueidis clients and call rueidislock.New",
}
