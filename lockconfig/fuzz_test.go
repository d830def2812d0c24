package lockconfig_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/lockconfig"
	"github.com/leaselock/lock/memory"
)

// FuzzParse checks that Parse never panics, that every error matches
// lock.ErrInvalid, and that a config it accepts round-trips: Parse reads
// Config.String back to the same Config, passwords aside, and String of
// that is the same text.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		seedMemory, seedRedis, nested(seedMemory, "ns"), nested(seedRedis, "ns"),
		`{"lockConfig":` + quoteJSON(seedRedis) + `}`,
		`{"type":"redis","nodes":["redis://a:6379",{"host":"b","port":6380,"password":"pw","db":2},"c:6381","rediss://u:p@d/2"]}`,
		`{"type":"redis","connection":{"url":"rediss://app@r.example","password":"pw","tls":{"caFile":"ca","certFile":"c","keyFile":"k","serverName":"n"}}}`,
		`{"type":"redis","nodes":["h:1"],"nodeTimeout":"80ms","ttl":"1.5s","autoExtend":false}`,
		`{"type":"inMemory","delay":"1.5s","retry":-3,"lockOptions":{"retryJitter":"250us","driftFactor":0.5}}`,
		`{"type":"inMemory","ttl":5000}`, `{"type":"inMemory","retry":1e1}`, `[]`, `"x"`, `{"type":"redis","nodes":[]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := lockconfig.Parse(data)
		if err != nil {
			if !errors.Is(err, lock.ErrInvalid) {
				t.Fatalf("Parse(%q) err = %v, not matching lock.ErrInvalid", data, err)
			}
			return
		}
		text := c.String()
		c2, err := lockconfig.Parse([]byte(text))
		if err != nil {
			t.Fatalf("Parse(%q) = %s, which Parse refuses: %v", data, text, err)
		}
		if text2 := c2.String(); text2 != text {
			t.Fatalf("Parse(%q).String() = %s\nthen %s", data, text, text2)
		}
		if got, want := fields(c2), fields(c); !reflect.DeepEqual(got, want) {
			t.Fatalf("Parse(%q) = %+v\nround trip %+v", data, want, got)
		}

		// Its options are accepted by a Mutex, or refused with ErrInvalid
		// (a TTL too short for the drift is found by package lock only).
		m := lock.New(memory.New(), c.Options()...)
		defer m.Close()
		l, err := m.TryAcquire(context.Background(), "k")
		if err != nil {
			if !errors.Is(err, lock.ErrInvalid) {
				t.Fatalf("TryAcquire with the options of %s: %v", text, err)
			}
			return
		}
		_ = l.Release(context.Background())
	})
}

// fields returns the exported fields of c, with each password replaced
// as Config.String replaces it.
func fields(c *lockconfig.Config) map[string]any {
	nodes := make([]map[string]any, len(c.Nodes))
	for i, n := range c.Nodes {
		pw := n.Password
		if pw != "" {
			pw = "xxxxx"
		}
		nodes[i] = map[string]any{"host": n.Host, "port": n.Port, "username": n.Username, "password": pw, "db": n.DB, "tls": n.TLS}
	}
	return map[string]any{
		"type": c.Type, "namespace": c.Namespace, "nodes": nodes, "nodeTimeout": c.NodeTimeout, "ttl": c.TTL,
		"retry": c.Retry, "delay": c.Delay, "jitter": c.Jitter, "driftFactor": c.DriftFactor, "autoExtend": c.AutoExtend,
	}
}
