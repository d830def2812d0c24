package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leaselock/lock"
	"github.com/leaselock/lock/rueidislock"
)

// inspectJSON runs lockctl inspect -json with args and decodes its result.
func inspectJSON(t *testing.T, args ...string) (code int, res inspectResult, stderr string) {
	t.Helper()
	code, stdout, stderr := runLockctl(t, t.Context(), append([]string{"inspect", "-json"}, args...)...)
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("lockctl inspect -json %q: %v; stdout:\n%s\nstderr:\n%s", args, err, stdout, stderr)
	}
	return code, res, stderr
}

func TestInspectCommand(t *testing.T) {
	t.Parallel()
	redis, servers := redisFlag(t, 3)
	addrs := strings.Split(redis[1], ",")
	b, err := rueidislock.Dial(addrs, rueidislock.WithNodeTimeout(250*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	m := lock.New(b, lock.WithNamespace("app"))
	defer m.Close()
	ctx := context.Background()
	l, err := m.AcquireNS(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)

	// Acquire returns once a majority holds the key: the third node may
	// take a moment more.
	var res inspectResult
	if !pollUntil(10*time.Second, func() bool {
		_, res, _ = inspectJSON(t, append(redis, "-namespace", "app", "job")...)
		return res.Agree == 3
	}) {
		t.Fatalf("inspect of a held key: %+v, want 3 nodes agreeing", res)
	}
	token := l.Token()
	if res.Key != "app:job" || res.State != stateHeld || res.Quorum != 2 || len(res.Holder) != rueidislock.HolderLen || len(res.Nodes) != 3 {
		t.Errorf("inspect -json of a held key: %+v", res)
	}
	for i, n := range res.Nodes {
		if n.Node != i || n.Addr != addrs[i] || !n.Held || n.Holder != res.Holder || n.TTL <= 0 || n.TTL > lock.DefaultTTL || n.Fence != token || n.Error != "" {
			t.Errorf("inspect -json, node %d: %+v; want held by %s, fence %d", i, n, res.Holder, token)
		}
	}

	code, stdout, stderr := runLockctl(t, t.Context(), append(append([]string{"inspect"}, redis...), "-namespace", "app", "job")...)
	if code != 0 || stderr != "" {
		t.Errorf("inspect of a held key: exit %d, stderr %q; want 0 and none", code, stderr)
	}
	tok := strconv.FormatUint(token, 10)
	for _, re := range []string{
		`(?m)^key "app:job": 3 nodes, quorum 2$`,
		`(?m)^NODE +ADDRESS +HELD +HOLDER +TTL +FENCE$`,
		`(?m)^0 +` + regexp.QuoteMeta(addrs[0]) + ` +yes +` + res.Holder + ` +\d+(\.\d+)?m?s +` + tok + `$`,
		`(?m)^2 +` + regexp.QuoteMeta(addrs[2]) + ` +yes +` + res.Holder + ` +\d+(\.\d+)?m?s +` + tok + `$`,
		`(?m)^held: 3 of 3 nodes agree on holder ` + res.Holder + ` \(quorum 2\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("inspect output does not match %s:\n%s", re, stdout)
		}
	}

	// One node lost the key, another is down: still held by a quorum.
	if err := servers[0].Do("DEL", "app:job").Error(); err != nil {
		t.Fatal(err)
	}
	if err := servers[1].Kill(); err != nil {
		t.Fatal(err)
	}
	code, res, _ = inspectJSON(t, append(redis, "-namespace", "app", "job")...)
	if code != 1 || res.State != stateUnknown || res.Agree != 1 || res.Nodes[1].Error == "" || res.Nodes[0].Held {
		t.Errorf("inspect with node 0's key deleted and node 1 down: exit %d, %+v; want 1, unknown", code, res)
	}
	code, stdout, _ = runLockctl(t, t.Context(), append(append([]string{"inspect"}, redis...), "-namespace", "app", "job")...)
	for _, re := range []string{
		`(?m)^0 +` + regexp.QuoteMeta(addrs[0]) + ` +no +- +- +` + tok + `$`,
		`(?m)^1 +` + regexp.QuoteMeta(addrs[1]) + `  error: .+$`,
		`(?m)^unknown: 2 of 3 nodes answered, and 1 agree on a holder \(quorum 2\)$`,
	} {
		if code != 1 || !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("inspect with a node down: exit %d, output does not match %s:\n%s", code, re, stdout)
		}
	}
}

// TestInspectNotHeld pins inspect of a key that no node holds, and that
// -namespace= takes away the namespace of a config.
func TestInspectNotHeld(t *testing.T) {
	t.Parallel()
	redis, servers := redisFlag(t, 3)
	if err := servers[2].Do("SET", "plain", "x", "PX", "60000").Error(); err != nil {
		t.Fatal(err)
	}
	code, res, stderr := inspectJSON(t, append(redis, "-namespace", "", "plain")...)
	if code != 0 || res.Key != "plain" || res.State != stateNotHeld || res.Agree != 1 || !res.Nodes[2].Held {
		t.Errorf("inspect of a key one node of 3 holds: exit %d, %+v; stderr %q", code, res, stderr)
	}
	code, stdout, _ := runLockctl(t, t.Context(), append(append([]string{"inspect"}, redis...), "free")...)
	if code != 0 || !strings.Contains(stdout, "not held: no node holds the key (quorum 2)") {
		t.Errorf("inspect of a free key: exit %d, output:\n%s", code, stdout)
	}
}

func TestBenchRedis(t *testing.T) {
	t.Parallel()
	redis, _ := redisFlag(t, 3)
	code, r, stderr := benchJSON(t, t.Context(), append(redis, "-ops", "200", "-workers", "4", "-keys", "2")...)
	if code != 0 || !r.OK || r.Backend != "redis" || r.Nodes != 3 || r.Acquisitions != 200 || r.LostUpdates != 0 || r.HoldersMax != 1 {
		t.Errorf("bench -redis: exit %d, %+v; stderr:\n%s", code, r, stderr)
	}
	code, stdout, _ := runLockctl(t, t.Context(), append(append([]string{"bench"}, redis...), "-ops", "20")...)
	if code != 0 || !regexp.MustCompile(`(?m)^backend +redis\nnodes +3\n`).MatchString(stdout) {
		t.Errorf("bench -redis: exit %d, table:\n%s", code, stdout)
	}
}
