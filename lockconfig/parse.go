package lockconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/leaselock/lock"
)

// EnvVar is the environment variable that FromEnv and OpenEnv read, as the
// seed's deployments set it.
const EnvVar = "LOCK_CONFIG"

// ErrNotSet is returned by FromEnv and OpenEnv when LOCK_CONFIG is not set
// or is empty. The seed fell back to a config written in the program then;
// a Go program does the same by checking for it with errors.Is.
var ErrNotSet = errors.New("lockconfig: " + EnvVar + " is unset or empty")

// FromEnv parses the value of the LOCK_CONFIG environment variable, as
// Parse does. It returns ErrNotSet if the variable is unset or empty.
func FromEnv() (*Config, error) {
	s := os.Getenv(EnvVar)
	if s == "" {
		return nil, ErrNotSet
	}
	c, err := Parse([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvVar, err)
	}
	return c, nil
}

// Parse reads a config in the seed's JSON: an object with "type"
// "inMemory" or "redis" and that type's fields, either at the top or under
// a top-level "lockConfig" key (which may also be a string holding that
// object, as the seed took LOCK_CONFIG's text). The package documentation
// lists the fields.
//
// Parse does no I/O: TLS files are read by Config.Backend. Any unknown
// field, value of the wrong type or out of range is an error that matches
// lock.ErrInvalid and, as a *lock.ArgError, names the field by its path,
// such as "lockConfig.lockOptions.retryDelay". No error shows a password.
func Parse(data []byte) (*Config, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, lock.Invalid("config", `""`, "is empty")
	}
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, lock.Invalid("config", fmt.Sprintf("(at byte %d)", se.Offset), "is not valid JSON: "+se.Error())
		}
		return nil, lock.Invalid("config", "(not shown)", "is not valid JSON")
	}
	// The whole config is never shown: it may be a URL with a password.
	top, err := value{path: "config", raw: raw, secret: true}.objectAt("")
	if err != nil {
		return nil, err
	}

	c := &Config{where: make(map[string]string)}
	body := top
	var outerNS value
	if lc, ok := top.take("lockConfig"); ok {
		// The seed's create() options: lockConfig beside the namespace.
		outerNS, _ = top.take("namespace")
		if err := top.restBeside(); err != nil {
			return nil, err
		}
		if lc.kind() == "string" {
			if lc, err = unwrapString(lc); err != nil {
				return nil, err
			}
		}
		if body, err = lc.object(); err != nil {
			return nil, err
		}
	}
	if err := c.parseBody(body, outerNS); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// restBeside reports a field beside "lockConfig" other than "namespace".
func (o *object) restBeside() error {
	for _, f := range o.fields {
		if !f.taken {
			return lock.Invalid(f.val.path, "("+article(f.val.kind())+")",
				`beside "lockConfig", only "namespace" is read`)
		}
	}
	return nil
}

// unwrapString returns the JSON object held in the string v.
func unwrapString(v value) (value, error) {
	s, err := v.str()
	if err != nil {
		return v, err
	}
	var raw json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return v, lock.Invalid(v.path, "(a string)", "must be an object, or a string holding a JSON object")
	}
	v.raw = raw
	v.secret = true // it was a string: if not an object, it may be a URL
	return v, nil
}

// parseBody reads the config object o; outer is the namespace given
// beside "lockConfig", if any.
func (c *Config) parseBody(o *object, outer value) error {
	t, ok := o.take("type")
	if !ok {
		return lock.Invalid(t.path, none, "is missing: "+wantType)
	}
	c.where["type"] = t.path
	var err error
	if c.Type, err = t.str(); err != nil {
		return err
	}
	if c.Type != TypeMemory && c.Type != TypeRedis {
		reason := wantType
		for _, known := range []string{TypeMemory, TypeRedis} {
			if strings.EqualFold(c.Type, known) {
				reason = fmt.Sprintf("did you mean %q?", known)
			}
		}
		return t.bad(reason)
	}

	if err := c.parseNamespace(o, outer); err != nil {
		return err
	}
	if err := c.parseRetry(o); err != nil {
		return err
	}
	if err := c.parseNodes(o); err != nil {
		return err
	}
	if v, ok := o.take("ttl"); ok {
		c.where["ttl"] = v.path
		if c.TTL, err = v.duration(); err != nil {
			return err
		}
		if c.TTL == 0 {
			return v.bad("must be positive")
		}
	}
	if v, ok := o.take("autoExtend"); ok {
		c.where["autoExtend"] = v.path
		on, err := v.boolean()
		if err != nil {
			return err
		}
		c.AutoExtend = &on
	}
	return o.rest()
}

// parseNamespace reads "namespace" from o and from beside "lockConfig".
func (c *Config) parseNamespace(o *object, outer value) error {
	inner, hasInner := o.take("namespace")
	hasOuter := outer.raw != nil && outer.kind() != "null"
	var err error
	if hasOuter {
		c.where["namespace"] = outer.path
		if c.Namespace, err = outer.str(); err != nil {
			return err
		}
	}
	if hasInner {
		ns, err := inner.str()
		if err != nil {
			return err
		}
		if hasOuter && ns != c.Namespace {
			return inner.bad(fmt.Sprintf("differs from the namespace beside lockConfig, %s", quote(c.Namespace)))
		}
		c.where["namespace"] = inner.path
		c.Namespace = ns
	}
	return nil
}

// parseRetry reads the retry settings: the seed's inMemory fields retry
// and delay, and the node-redlock fields of lockOptions.
func (c *Config) parseRetry(o *object) error {
	memRetry, hasRetry := o.take("retry")
	memDelay, hasDelay := o.take("delay")
	if c.Type == TypeRedis {
		// The seed's Redis lock ignored them: say where the setting goes,
		// rather than let Go and Node services retry differently.
		if hasRetry {
			return memRetry.bad(`only for type "inMemory"; type "redis" reads lockOptions.retryCount`)
		}
		if hasDelay {
			return memDelay.bad(`only for type "inMemory"; type "redis" reads lockOptions.retryDelay`)
		}
	}
	if hasRetry {
		n, err := memRetry.integer()
		if err != nil {
			return err
		}
		// The seed: "Negative numbers means infinite".
		n = max(n, -1)
		c.Retry = &n
		c.where["lockOptions.retryCount"] = memRetry.path
	}
	if hasDelay {
		d, err := memDelay.millis()
		if err != nil {
			return err
		}
		c.Delay = &d
		c.where["lockOptions.retryDelay"] = memDelay.path
	}

	v, ok := o.take("lockOptions")
	if !ok {
		return nil
	}
	lo, err := v.object()
	if err != nil {
		return err
	}
	if v, ok := lo.take("retryCount"); ok {
		if hasRetry {
			return v.bad(`the retries are given in "retry" already`)
		}
		n, err := v.integer()
		if err != nil {
			return err
		}
		if n < -1 {
			// node-redlock 3 tried once, 5 tries forever: neither is clear.
			return v.bad("must be -1 (retry until the context is done) or more")
		}
		c.Retry = &n
		c.where["lockOptions.retryCount"] = v.path
	}
	if v, ok := lo.take("retryDelay"); ok {
		if hasDelay {
			return v.bad(`the delay is given in "delay" already`)
		}
		d, err := v.millis()
		if err != nil {
			return err
		}
		c.Delay = &d
		c.where["lockOptions.retryDelay"] = v.path
	}
	if v, ok := lo.take("retryJitter"); ok {
		d, err := v.millis()
		if err != nil {
			return err
		}
		c.Jitter = &d
		c.where["lockOptions.retryJitter"] = v.path
	}
	if v, ok := lo.take("driftFactor"); ok {
		f, err := v.number()
		if err != nil {
			return err
		}
		if !(f >= 0 && f < 1) {
			return v.bad("must be in [0, 1)")
		}
		c.DriftFactor = &f
		c.where["lockOptions.driftFactor"] = v.path
	}
	return lo.rest()
}

// parseNodes reads the Redis nodes: the seed's "connection", or "nodes",
// and "nodeTimeout".
func (c *Config) parseNodes(o *object) error {
	conn, hasConn := o.take("connection")
	nodes, hasNodes := o.take("nodes")
	timeout, hasTimeout := o.take("nodeTimeout")
	if c.Type == TypeMemory {
		for _, v := range []struct {
			v   value
			has bool
		}{{conn, hasConn}, {nodes, hasNodes}, {timeout, hasTimeout}} {
			if v.has {
				return v.v.bad(onlyRedis)
			}
		}
		return nil
	}
	var err error
	switch {
	case hasConn && hasNodes:
		return nodes.bad(`give "connection" or "nodes", not both`)
	case hasConn:
		c.where["nodes"] = conn.path
		n, err := parseNode(conn)
		if err != nil {
			return err
		}
		c.Nodes = []Node{n}
	case hasNodes:
		c.where["nodes"] = nodes.path
		if c.Nodes, err = parseNodes(nodes); err != nil {
			return err
		}
	default:
		return lock.Invalid(conn.path, none, `is missing: type "redis" needs "connection" or "nodes"`)
	}
	if hasTimeout {
		c.where["nodeTimeout"] = timeout.path
		if c.NodeTimeout, err = timeout.duration(); err != nil {
			return err
		}
		if c.NodeTimeout == 0 {
			return timeout.bad("must be positive")
		}
	}
	return nil
}
