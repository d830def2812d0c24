package lockconfig_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/lockconfig"
)

// The seed's two shapes, as its README writes them.
const (
	seedMemory = `{"type":"inMemory","retry":0,"delay":100}`
	seedRedis  = `{"type":"redis","connection":{"host":"127.0.0.1","port":6379},` +
		`"lockOptions":{"driftFactor":0.01,"retryCount":0,"retryDelay":200,"retryJitter":100}}`

	// Their canonical forms, as Config.String writes them.
	wantMemory = `{"type":"inMemory","lockOptions":{"retryCount":0,"retryDelay":"100ms"}}`
	wantRedis  = `{"type":"redis","nodes":[{"host":"127.0.0.1","port":6379}],` +
		`"lockOptions":{"driftFactor":0.01,"retryCount":0,"retryDelay":"200ms","retryJitter":"100ms"}}`
)

// nested puts config under "lockConfig", as the seed's create() options
// hold it, with the namespace beside it.
func nested(config, namespace string) string {
	return `{"namespace":"` + namespace + `","lockConfig":` + config + `}`
}

func TestParseSeedShapes(t *testing.T) {
	for _, tc := range []struct {
		name, config, want string
	}{
		{"memory", seedMemory, wantMemory},
		{"memory/nested", `{"lockConfig":` + seedMemory + `}`, wantMemory},
		{"memory/nested with namespace", nested(seedMemory, "test"),
			`{"type":"inMemory","namespace":"test","lockOptions":{"retryCount":0,"retryDelay":"100ms"}}`},
		{"memory/create options", `{"type":"inMemory","namespace":"myApp","retry":0,"delay":100}`,
			`{"type":"inMemory","namespace":"myApp","lockOptions":{"retryCount":0,"retryDelay":"100ms"}}`},
		{"memory/retry forever", `{"type":"inMemory","retry":-5,"delay":100}`,
			`{"type":"inMemory","lockOptions":{"retryCount":-1,"retryDelay":"100ms"}}`},
		{"memory/only type", `{"type":"inMemory"}`, `{"type":"inMemory"}`},
		{"redis", seedRedis, wantRedis},
		{"redis/nested", nested(seedRedis, "myApp"), strings.Replace(wantRedis, `"nodes"`, `"namespace":"myApp","nodes"`, 1)},
		{"redis/nested as a string", `{"lockConfig":` + quoteJSON(seedRedis) + `}`, wantRedis},
		{"redis/namespace both places, same", `{"namespace":"a","lockConfig":{"type":"inMemory","namespace":"a"}}`,
			`{"type":"inMemory","namespace":"a"}`},
		{"redis/retry forever", `{"type":"redis","connection":{"host":"h"},"lockOptions":{"retryCount":-1}}`,
			`{"type":"redis","nodes":[{"host":"h","port":6379}],"lockOptions":{"retryCount":-1}}`},
		{"redis/nulls are absent", `{"type":"redis","connection":{"host":"h","port":null,"password":null},"lockOptions":null,"ttl":null}`,
			`{"type":"redis","nodes":[{"host":"h","port":6379}]}`},
		{"redis/JavaScript numbers", `{"type":"redis","connection":{"host":"h","port":6379.0,"db":2e0},"lockOptions":{"retryCount":1e1}}`,
			`{"type":"redis","nodes":[{"host":"h","port":6379,"db":2}],"lockOptions":{"retryCount":10}}`},
		{"redis/connection URL", `{"type":"redis","connection":"redis://10.0.0.1:6380/3"}`,
			`{"type":"redis","nodes":[{"host":"10.0.0.1","port":6380,"db":3}]}`},
		{"redis/connection host:port", `{"type":"redis","connection":"[::1]:6380"}`,
			`{"type":"redis","nodes":[{"host":"::1","port":6380}]}`},
		{"redis/connection url field", `{"type":"redis","connection":{"url":"rediss://app@r.example","password":"pw","tls":{"caFile":"ca.pem"}}}`,
			`{"type":"redis","nodes":[{"host":"r.example","port":6379,"username":"app","password":"xxxxx","tls":{"caFile":"ca.pem"}}]}`},
		{"redis/db query", `{"type":"redis","connection":"redis://h?db=4"}`,
			`{"type":"redis","nodes":[{"host":"h","port":6379,"db":4}]}`},
		{"redis/several nodes", `{"type":"redis","nodes":["redis://a:6379",{"host":"b","port":6380},"c:6381","rediss://u:p@d/2",{"host":"e","tls":true}]}`,
			`{"type":"redis","nodes":[{"host":"a","port":6379},{"host":"b","port":6380},{"host":"c","port":6381},` +
				`{"host":"d","port":6379,"username":"u","password":"xxxxx","db":2,"tls":{}},{"host":"e","port":6379,"tls":{}}]}`},
		{"redis/IPv6 hosts", `{"type":"redis","nodes":[{"host":"::1"},{"host":"fe80::1%eth0","port":7},"[::2]:8"]}`,
			`{"type":"redis","nodes":[{"host":"::1","port":6379},{"host":"fe80::1%eth0","port":7},{"host":"::2","port":8}]}`},
		{"redis/tls false", `{"type":"redis","connection":{"host":"h","tls":false}}`,
			`{"type":"redis","nodes":[{"host":"h","port":6379}]}`},
		{"redis/tls files", `{"type":"redis","connection":{"host":"h","tls":{"caFile":"ca","certFile":"c","keyFile":"k","serverName":"n"}}}`,
			`{"type":"redis","nodes":[{"host":"h","port":6379,"tls":{"caFile":"ca","certFile":"c","keyFile":"k","serverName":"n"}}]}`},
		{"go additions", `{"type":"redis","nodes":["h:1"],"nodeTimeout":"80ms","ttl":"1.5s","autoExtend":false}`,
			`{"type":"redis","nodes":[{"host":"h","port":1}],"nodeTimeout":"80ms","ttl":"1.5s","autoExtend":false}`},
		{"durations as strings", `{"type":"inMemory","delay":"1.5s","lockOptions":{"retryJitter":"250us"}}`,
			`{"type":"inMemory","lockOptions":{"retryDelay":"1.5s","retryJitter":"250µs"}}`},
		{"memory/lockOptions", `{"type":"inMemory","lockOptions":{"retryCount":3,"retryDelay":5,"retryJitter":0,"driftFactor":0}}`,
			`{"type":"inMemory","lockOptions":{"driftFactor":0,"retryCount":3,"retryDelay":"5ms","retryJitter":"0s"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := lockconfig.Parse([]byte(tc.config))
			if err != nil {
				t.Fatalf("Parse(%s) err = %v", tc.config, err)
			}
			if got := c.String(); got != tc.want {
				t.Errorf("Parse(%s) =\n%s\nwant\n%s", tc.config, got, tc.want)
			}
		})
	}
}

// quoteJSON returns s as a JSON string.
func quoteJSON(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// TestParseValues checks the Go values behind the seed's fields: the
// seed's milliseconds stay milliseconds.
func TestParseValues(t *testing.T) {
	c, err := lockconfig.Parse([]byte(nested(seedRedis, "myApp")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Type != lockconfig.TypeRedis || c.Namespace != "myApp" {
		t.Errorf("Type, Namespace = %q, %q; want %q, %q", c.Type, c.Namespace, lockconfig.TypeRedis, "myApp")
	}
	if len(c.Nodes) != 1 || c.Nodes[0].Host != "127.0.0.1" || c.Nodes[0].Port != 6379 {
		t.Errorf("Nodes = %v, want [redis://127.0.0.1:6379]", c.Nodes)
	}
	if c.Retry == nil || *c.Retry != 0 {
		t.Errorf("Retry = %v, want 0", c.Retry)
	}
	if c.Delay == nil || *c.Delay != 200*time.Millisecond {
		t.Errorf("Delay = %v, want 200ms", c.Delay)
	}
	if c.Jitter == nil || *c.Jitter != 100*time.Millisecond {
		t.Errorf("Jitter = %v, want 100ms", c.Jitter)
	}
	if c.DriftFactor == nil || *c.DriftFactor != 0.01 {
		t.Errorf("DriftFactor = %v, want 0.01", c.DriftFactor)
	}
	if c.TTL != 0 || c.AutoExtend != nil || c.NodeTimeout != 0 {
		t.Errorf("TTL, AutoExtend, NodeTimeout = %v, %v, %v; want unset", c.TTL, c.AutoExtend, c.NodeTimeout)
	}

	c, err = lockconfig.Parse([]byte(`{"type":"redis","nodes":[{"url":"redis://app@h:7000/1","password":"p@ss:w/rd"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if n := c.Nodes[0]; n.Username != "app" || n.Password != "p@ss:w/rd" || n.DB != 1 || n.Port != 7000 {
		t.Errorf("node = %+v, want user app, the password, db 1, port 7000", n)
	}
	if got, want := c.Nodes[0].String(), "redis://app:xxxxx@h:7000/1"; got != want {
		t.Errorf("Node.String() = %q, want %q", got, want)
	}
}

// TestDurations pins the rule of guarantee 8: the seed's millisecond
// fields take whole milliseconds or duration strings; Go's fields take
// duration strings only, so 5000 never becomes 5µs.
func TestDurations(t *testing.T) {
	ms := func(field, value string) string {
		return `{"type":"inMemory","lockOptions":{"retryCount":0,"` + field + `":` + value + `}}`
	}
	for _, tc := range []struct {
		config string
		want   time.Duration // of Delay, Jitter or TTL
		err    string        // if not empty, the error's field
	}{
		{ms("retryDelay", "100"), 100 * time.Millisecond, ""},
		{ms("retryDelay", "0"), 0, ""},
		{ms("retryDelay", `"100ms"`), 100 * time.Millisecond, ""},
		{ms("retryDelay", `"1.5s"`), 1500 * time.Millisecond, ""},
		{ms("retryDelay", `" 2m "`), 2 * time.Minute, ""},
		{ms("retryDelay", `"0"`), 0, ""},
		{ms("retryJitter", "100"), 100 * time.Millisecond, ""},
		{ms("retryJitter", `"1ms"`), time.Millisecond, ""},
		{`{"type":"inMemory","delay":250}`, 250 * time.Millisecond, ""},
		{`{"type":"inMemory","ttl":"1.5s"}`, 1500 * time.Millisecond, ""},
		{`{"type":"inMemory","ttl":"24h"}`, 24 * time.Hour, ""},

		{ms("retryDelay", "1.5"), 0, "lockOptions.retryDelay"},
		{ms("retryDelay", `"100"`), 0, "lockOptions.retryDelay"},
		{ms("retryDelay", `"fast"`), 0, "lockOptions.retryDelay"},
		{ms("retryDelay", "-1"), 0, "lockOptions.retryDelay"},
		{ms("retryDelay", `"-1ms"`), 0, "lockOptions.retryDelay"},
		{ms("retryDelay", "1e30"), 0, "lockOptions.retryDelay"},
		{ms("retryDelay", "9223372036855"), 0, "lockOptions.retryDelay"},
		{ms("retryDelay", "true"), 0, "lockOptions.retryDelay"},
		{`{"type":"inMemory","ttl":5000}`, 0, "ttl"},
		{`{"type":"inMemory","ttl":"5000"}`, 0, "ttl"},
		{`{"type":"inMemory","ttl":0}`, 0, "ttl"},
		{`{"type":"inMemory","ttl":"0s"}`, 0, "ttl"},
		{`{"type":"inMemory","ttl":"25h"}`, 0, "ttl"},
		{`{"type":"inMemory","ttl":"soon"}`, 0, "ttl"},
		{`{"type":"inMemory","ttl":["1s"]}`, 0, "ttl"},
		{`{"type":"redis","nodes":["h:1"],"nodeTimeout":50}`, 0, "nodeTimeout"},
		{`{"type":"redis","nodes":["h:1"],"nodeTimeout":"0s"}`, 0, "nodeTimeout"},
	} {
		c, err := lockconfig.Parse([]byte(tc.config))
		if tc.err != "" {
			checkArgError(t, tc.config, err, tc.err, "")
			continue
		}
		if err != nil {
			t.Errorf("Parse(%s) err = %v", tc.config, err)
			continue
		}
		var got time.Duration
		switch {
		case c.TTL != 0:
			got = c.TTL
		case c.Delay != nil:
			got = *c.Delay
		case c.Jitter != nil:
			got = *c.Jitter
		}
		if got != tc.want {
			t.Errorf("Parse(%s) duration = %v, want %v", tc.config, got, tc.want)
		}
	}

	// The message says what is missing, as guarantee 8 asks.
	_, err := lockconfig.Parse([]byte(`{"type":"inMemory","ttl":5000}`))
	if want := `ttl 5000: a duration needs a unit, like "5s"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("ttl 5000: err = %v, want it to contain %q", err, want)
	}
}

// checkArgError fails t unless err matches lock.ErrInvalid and is a
// *lock.ArgError naming field, with text in its message.
func checkArgError(t *testing.T, config string, err error, field, text string) {
	t.Helper()
	if err == nil {
		t.Errorf("Parse(%s) err = nil, want an error about %s", config, field)
		return
	}
	if !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("Parse(%s) err = %v, want it to match lock.ErrInvalid", config, err)
	}
	var ae *lock.ArgError
	if !errors.As(err, &ae) {
		t.Errorf("Parse(%s) err = %v (%T), want a *lock.ArgError", config, err, err)
		return
	}
	if ae.Arg != field {
		t.Errorf("Parse(%s) err = %v\nnames %q, want %q", config, err, ae.Arg, field)
	}
	if !strings.Contains(err.Error(), text) {
		t.Errorf("Parse(%s) err = %v, want it to contain %q", config, err, text)
	}
}

func TestParseErrors(t *testing.T) {
	redis := func(fields string) string {
		return `{"type":"redis","connection":{"host":"h"}` + fields + `}`
	}
	node := func(node string) string { return `{"type":"redis","nodes":[` + node + `]}` }
	for _, tc := range []struct {
		name, config, field, text string
	}{
		// The whole value.
		{"empty", ``, "config", "is empty"},
		{"blank", " \n\t", "config", "is empty"},
		{"not JSON", `{"type":`, "config", "not valid JSON"},
		{"trailing data", `{"type":"inMemory"} {}`, "config", "not valid JSON"},
		{"array", `[1]`, "config", "must be an object"},
		{"string", `"inMemory"`, "config", "must be an object"},
		{"null", `null`, "config", "must be an object"},

		// type.
		{"no type", `{"retry":0}`, "type", "is missing"},
		{"no type/nested", `{"lockConfig":{"retry":0}}`, "lockConfig.type", "is missing"},
		{"unknown type", `{"type":"mongo"}`, "type", `must be "inMemory" or "redis"`},
		{"type case", `{"type":"InMemory"}`, "type", `did you mean "inMemory"?`},
		{"type not a string", `{"type":1}`, "type", "must be a string"},

		// Unknown and duplicate fields, at every level.
		{"unknown", `{"type":"inMemory","retrys":1}`, "retrys", "unknown field"},
		{"unknown/case", `{"type":"inMemory","Retry":1}`, "Retry", `did you mean "retry"?`},
		{"unknown/nested", `{"lockConfig":{"type":"inMemory","lockOptions":{"retryDelays":1}}}`, "lockConfig.lockOptions.retryDelays", "unknown field"},
		{"unknown/connection", `{"type":"redis","connection":{"host":"h","keyPrefix":"x:"}}`, "connection.keyPrefix", "use the namespace"},
		{"unknown/tls", `{"type":"redis","connection":{"host":"h","tls":{"rejectUnauthorized":false}}}`, "connection.tls.rejectUnauthorized", "cannot be turned off"},
		{"unknown/tls ca", `{"type":"redis","nodes":[{"host":"h","tls":{"ca":"-----BEGIN"}}]}`, "nodes[0].tls.ca", `"caFile"`},
		{"beside lockConfig", `{"lockConfig":{"type":"inMemory"},"type":"redis"}`, "type", `only "namespace"`},
		{"duplicate", `{"type":"inMemory","type":"redis"}`, "type", "given once"},
		{"duplicate/nested", `{"type":"redis","connection":{"host":"a","host":"b"}}`, "connection.host", "given once"},
		{"lockConfig not an object", `{"lockConfig":[]}`, "lockConfig", "must be an object"},
		{"lockConfig string not JSON", `{"lockConfig":"type=redis"}`, "lockConfig", "a string holding a JSON object"},
		{"lockOptions not an object", `{"type":"inMemory","lockOptions":5}`, "lockOptions", "must be an object"},

		// Fields of the wrong type.
		{"retry string", `{"type":"inMemory","retry":"3"}`, "retry", "must be a whole number"},
		{"retry fraction", `{"type":"inMemory","retry":1.5}`, "retry", "whole number"},
		{"retry huge", `{"type":"inMemory","retry":1e300}`, "retry", "out of range"},
		{"delay bool", `{"type":"inMemory","delay":true}`, "delay", "milliseconds or a duration"},
		{"port string", `{"type":"redis","connection":{"host":"h","port":"6379"}}`, "connection.port", "whole number"},
		{"drift string", redis(`,"lockOptions":{"driftFactor":"0.01"}`), "lockOptions.driftFactor", "must be a number"},
		{"autoExtend string", `{"type":"inMemory","autoExtend":"yes"}`, "autoExtend", "true or false"},
		{"namespace number", `{"type":"inMemory","namespace":5}`, "namespace", "must be a string"},
		{"username number", `{"type":"redis","connection":{"host":"h","username":5}}`, "connection.username", "must be a string"},
		{"tls string", `{"type":"redis","connection":{"host":"h","tls":"yes"}}`, "connection.tls", "true, false or an object"},
		{"caFile number", `{"type":"redis","connection":{"host":"h","tls":{"caFile":1}}}`, "connection.tls.caFile", "must be a string"},

		// Out of range.
		{"negative delay", `{"type":"inMemory","delay":-5}`, "delay", "must not be negative"},
		{"negative retryDelay", `{"lockConfig":` + redis(`,"lockOptions":{"retryDelay":-5}`) + `}`, "lockConfig.lockOptions.retryDelay", "must not be negative"},
		{"negative jitter", redis(`,"lockOptions":{"retryJitter":-1}`), "lockOptions.retryJitter", "must not be negative"},
		{"retryCount -2", redis(`,"lockOptions":{"retryCount":-2}`), "lockOptions.retryCount", "-1"},
		{"drift 1", redis(`,"lockOptions":{"driftFactor":1}`), "lockOptions.driftFactor", "[0, 1)"},
		{"drift negative", redis(`,"lockOptions":{"driftFactor":-0.1}`), "lockOptions.driftFactor", "[0, 1)"},
		{"drift huge", redis(`,"lockOptions":{"driftFactor":1e400}`), "lockOptions.driftFactor", "out of range"},
		{"port 0", `{"type":"redis","connection":{"host":"h","port":0}}`, "connection.port", "1..65535"},
		{"port 65536", `{"type":"redis","connection":{"host":"h","port":65536}}`, "connection.port", "1..65535"},
		{"db negative", `{"type":"redis","connection":{"host":"h","db":-1}}`, "connection.db", "must not be negative"},
		{"no pause", `{"type":"inMemory","lockOptions":{"retryDelay":0,"retryJitter":0}}`, "lockOptions.retryDelay", "without pause"},
		{"no pause/seed", `{"type":"inMemory","retry":-1,"delay":0,"lockOptions":{"retryJitter":"0s"}}`, "delay", "without pause"},
		{"namespace too long", `{"type":"inMemory","namespace":"` + strings.Repeat("n", lock.MaxKeyLen) + `"}`, "namespace", "shorter"},

		// Fields in the wrong place, or given twice.
		{"retry for redis", redis(`,"retry":0`), "retry", "lockOptions.retryCount"},
		{"delay for redis", redis(`,"delay":100`), "delay", "lockOptions.retryDelay"},
		{"connection for memory", `{"type":"inMemory","connection":{"host":"h"}}`, "connection", `only for type "redis"`},
		{"nodes for memory", `{"type":"inMemory","nodes":["h:1"]}`, "nodes", `only for type "redis"`},
		{"nodeTimeout for memory", `{"type":"inMemory","nodeTimeout":"1s"}`, "nodeTimeout", `only for type "redis"`},
		{"retry twice", `{"type":"inMemory","retry":0,"lockOptions":{"retryCount":1}}`, "lockOptions.retryCount", `"retry" already`},
		{"delay twice", `{"type":"inMemory","delay":1,"lockOptions":{"retryDelay":1}}`, "lockOptions.retryDelay", `"delay" already`},
		{"namespaces differ", `{"namespace":"a","lockConfig":{"type":"inMemory","namespace":"b"}}`, "lockConfig.namespace", "differs"},

		// Nodes.
		{"no nodes", `{"type":"redis"}`, "connection", `needs "connection" or "nodes"`},
		{"no nodes/nested", `{"lockConfig":{"type":"redis","lockOptions":{}}}`, "lockConfig.connection", "is missing"},
		{"connection and nodes", `{"type":"redis","connection":"a:1","nodes":["b:1"]}`, "nodes", "not both"},
		{"empty nodes", `{"type":"redis","nodes":[]}`, "nodes", "at least one node"},
		{"nodes not an array", `{"type":"redis","nodes":"a:1"}`, "nodes", "must be an array"},
		{"node number", node(`5`), "nodes[0]", `"host:port"`},
		{"node without port", node(`"a"`), "nodes[0]", `"host:port"`},
		{"node port 0", node(`"a:0"`), "nodes[0]", "1..65535"},
		{"node port name", node(`"a:redis"`), "nodes[0]", "1..65535"},
		{"node empty host", node(`":6379"`), "nodes[0]", "the host is missing"},
		{"node scheme", node(`"http://a:1"`), "nodes[0]", "redis:// or rediss://"},
		{"node unix", node(`"unix:///tmp/redis.sock"`), "nodes[0]", "Unix sockets"},
		{"node skip_verify", node(`"rediss://a?skip_verify=true"`), "nodes[0]", "cannot be turned off"},
		{"node addr", node(`"redis://a?addr=b:1"`), "nodes[0]", "one URL is one node"},
		{"node master_set", node(`"redis://a?master_set=m"`), "nodes[0]", `"master_set" is not supported`},
		{"node db twice", node(`"redis://a/1?db=2"`), "nodes[0]", "given twice"},
		{"node bad path", node(`"redis://a/x"`), "nodes[0]", "database number"},
		{"node bad URL port", node(`"redis://a:99999"`), "nodes[0]", "1..65535"},
		{"node empty URL port", node(`"redis://a:"`), "nodes[0]", "1..65535"},
		{"node URL no host", node(`"redis://:6379"`), "nodes[0]", "host is missing"},
		{"node fragment", node(`"redis://a#x"`), "nodes[0]", "not a valid Redis URL"},
		{"duplicate nodes", node(`"a:1",{"host":"A","port":1}`), "nodes[1]", "node of nodes[0] again"},
		{"duplicate nodes/URL", node(`"a:6379","redis://a"`), "nodes[1]", "node of nodes[0] again"},
		{"node no host", node(`{"port":1}`), "nodes[0].host", `give "host" or "url"`},
		{"node host with a slash", node(`{"host":"a/b"}`), "nodes[0].host", "host name or IP address"},
		{"node host with a port", node(`{"host":"redis:6379"}`), "nodes[0].host", "without scheme, user or port"},
		{"node url and host", node(`{"url":"redis://a","host":"a"}`), "nodes[0].host", "not both"},
		{"node url not a string", node(`{"url":1}`), "nodes[0].url", "must be a string"},
		{"node url and username", node(`{"url":"redis://u@a","username":"v"}`), "nodes[0].username", "already"},
		{"node url and db", node(`{"url":"redis://a/1","db":2}`), "nodes[0].db", "another database"},
		{"node tls on redis://", node(`{"url":"redis://a","tls":true}`), "nodes[0].tls", "use rediss://"},
		{"node tls off on rediss://", node(`{"url":"rediss://a","tls":false}`), "nodes[0].tls", "which is TLS"},
		{"cert without key", node(`{"host":"a","tls":{"certFile":"c.pem"}}`), "nodes[0].tls.keyFile", "needed with certFile"},
		{"key without cert", node(`{"host":"a","tls":{"keyFile":"k.pem"}}`), "nodes[0].tls.certFile", "needed with keyFile"},
		{"node nested path", `{"lockConfig":{"type":"redis","nodes":["a:1",{"host":"b","port":-1}]}}`, "lockConfig.nodes[1].port", "1..65535"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := lockconfig.Parse([]byte(tc.config))
			checkArgError(t, tc.config, err, tc.field, tc.text)
		})
	}
}
