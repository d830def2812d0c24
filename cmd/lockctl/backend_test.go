package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBackendSelection(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "lock.json")
	if err := os.WriteFile(file, []byte(`{"type":"redis","nodes":["10.0.0.1:6379","10.0.0.2:6379","10.0.0.3:6379"],"namespace":"fromFile"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const (
		envRedis  = `{"type":"redis","connection":{"host":"10.0.0.9","port":6379},"namespace":"fromEnv"}`
		envMemory = `{"type":"inMemory"}`
	)
	tests := []struct {
		name       string
		args       []string
		env        string // LOCK_CONFIG
		wantKind   string
		wantSource string
		wantNodes  int
		wantNS     string // the namespace with no -namespace flag
		wantErr    []string
	}{
		{name: "nothing", wantKind: "memory", wantSource: "default"},
		{name: "LOCK_CONFIG redis", env: envRedis, wantKind: "redis", wantSource: "LOCK_CONFIG", wantNodes: 1, wantNS: "fromEnv"},
		{name: "LOCK_CONFIG inMemory", env: envMemory, wantKind: "memory", wantSource: "LOCK_CONFIG"},
		{name: "-config", args: []string{"-config", file}, env: envRedis, wantKind: "redis", wantSource: "-config " + file, wantNodes: 3, wantNS: "fromFile"},
		{name: "-redis over LOCK_CONFIG", args: []string{"-redis", "a:1,b:2"}, env: envRedis, wantKind: "redis", wantSource: "-redis", wantNodes: 2},
		{name: "-redis repeated", args: []string{"-redis", "a:1", "-redis", "b:2, c:3"}, wantKind: "redis", wantSource: "-redis", wantNodes: 3},
		{name: "-redis URL", args: []string{"-redis", "redis://a:1/2,rediss://b"}, wantKind: "redis", wantSource: "-redis", wantNodes: 2},
		{name: "-redis ignores a broken LOCK_CONFIG", args: []string{"-redis", "a:1"}, env: "{", wantKind: "redis", wantSource: "-redis", wantNodes: 1},
		{name: "-backend memory over LOCK_CONFIG", args: []string{"-backend", "memory"}, env: envRedis, wantKind: "memory"},
		{name: "-backend redis", args: []string{"-backend", "redis"}, env: envRedis, wantKind: "redis", wantSource: "LOCK_CONFIG", wantNodes: 1, wantNS: "fromEnv"},

		{name: "-backend redis without nodes", args: []string{"-backend", "redis"}, wantErr: []string{"-backend redis needs Redis nodes", "-redis", "LOCK_CONFIG"}},
		{name: "-backend redis over inMemory", args: []string{"-backend", "redis"}, env: envMemory, wantErr: []string{"-backend redis needs Redis nodes"}},
		{name: "-backend unknown", args: []string{"-backend", "etcd"}, wantErr: []string{`invalid -backend "etcd"`, "memory, redis"}},
		{name: "-redis and -config", args: []string{"-redis", "a:1", "-config", file}, wantErr: []string{"-redis and -config"}},
		{name: "-backend memory and -redis", args: []string{"-backend", "memory", "-redis", "a:1"}, wantErr: []string{"-backend memory takes neither"}},
		{name: "broken LOCK_CONFIG", env: `{"type":"redis"}`, wantErr: []string{"invalid LOCK_CONFIG", "connection"}},
		{name: "missing -config", args: []string{"-config", filepath.Join(dir, "nope.json")}, wantErr: []string{"invalid -config", "nope.json"}},
		{name: "bad -redis", args: []string{"-redis", "a:1,nohost"}, wantErr: []string{"invalid -redis address 2", "nohost", "host:port"}},
		{name: "duplicate -redis", args: []string{"-redis", "a:1,a:1"}, wantErr: []string{"invalid -redis address 2", "node of address 1 again"}},
		{name: "-redis password", args: []string{"-redis", "redis://u:s3cret@a:1/?bogus=1"}, wantErr: []string{"invalid -redis"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := backendFlags{getenv: func(name string) string {
				if name == "LOCK_CONFIG" {
					return tt.env
				}
				return ""
			}}
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			f.register(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := f.resolve()
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("resolve(%q) = nil, want an error; kind %s", tt.args, f.kind)
				}
				if _, ok := err.(*usageError); !ok {
					t.Errorf("resolve(%q) = %T, want a usage error", tt.args, err)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("resolve(%q) = %q, want it to contain %q", tt.args, err, want)
					}
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("resolve(%q) = %q shows the password", tt.args, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve(%q) = %v", tt.args, err)
			}
			if f.kind != tt.wantKind || (tt.wantSource != "" && f.source != tt.wantSource) {
				t.Errorf("resolve(%q): kind %q from %q, want %q from %q", tt.args, f.kind, f.source, tt.wantKind, tt.wantSource)
			}
			if f.cfg != nil && len(f.cfg.Nodes) != tt.wantNodes {
				t.Errorf("resolve(%q): %d nodes, want %d", tt.args, len(f.cfg.Nodes), tt.wantNodes)
			}
			if got := f.namespace(namespaceFlag{}); got != tt.wantNS {
				t.Errorf("resolve(%q): namespace %q, want %q", tt.args, got, tt.wantNS)
			}
			if got := f.namespace(namespaceFlag{value: "flag", set: true}); got != "flag" {
				t.Errorf("resolve(%q): namespace with -namespace flag = %q, want flag", tt.args, got)
			}
			if got := f.namespace(namespaceFlag{set: true}); got != "" {
				t.Errorf("resolve(%q): namespace with -namespace= %q, want none", tt.args, got)
			}
		})
	}
}

func TestRunInspectUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want []string // parts of stderr
	}{
		{[]string{"run"}, []string{"missing KEY and COMMAND"}},
		{[]string{"run", "-redis", "a:1", "job"}, []string{`missing COMMAND after KEY "job"`}},
		{[]string{"run", "-redis", "a:1", "job", "--"}, []string{`missing COMMAND after KEY "job"`}},
		{[]string{"run", "-redis", "a:1", "job", "-wait", "1s", "true"}, []string{"flag -wait after KEY", "flags go before KEY"}},
		{[]string{"run", "-redis", "a:1", "", "true"}, []string{`invalid KEY ""`}},
		{[]string{"run", "job", "--", "true"}, []string{"run needs a lock shared between processes", "-redis host:port", "LOCK_CONFIG="}},
		{[]string{"run", "-backend", "memory", "job", "true"}, []string{"run needs a lock shared between processes"}},
		{[]string{"run", "-redis", "a:1", "-wait", "-1s", "job", "true"}, []string{`invalid value "-1s" for flag -wait`, "negative"}},
		{[]string{"run", "-redis", "a:1", "-wait", "soon", "job", "true"}, []string{`invalid value "soon" for flag -wait`, "forever"}},
		{[]string{"run", "-redis", "a:1", "-ttl", "0s", "job", "true"}, []string{"invalid -ttl 0s"}},
		{[]string{"run", "-redis", "a:1", "-grace", "-1s", "job", "true"}, []string{"invalid -grace -1s"}},
		{[]string{"inspect"}, []string{"missing KEY"}},
		{[]string{"inspect", "-redis", "a:1", "a", "b"}, []string{`unexpected argument "b" after KEY`}},
		{[]string{"inspect", "job"}, []string{"inspect needs a lock shared between processes", "memory"}},
		{[]string{"inspect", "-redis", "a:1", "-node-timeout", "-1s", "job"}, []string{"invalid -node-timeout -1s"}},
		{[]string{"inspect", "-backend", "test-stuck", "job"}, []string{"inspect needs a lock shared between processes"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runLockctl(t, t.Context(), tt.args...)
			if code != 2 || stdout != "" {
				t.Errorf("lockctl %q: exit %d, stdout %q; want 2 and none", tt.args, code, stdout)
			}
			for _, want := range tt.want {
				if !strings.Contains(stderr, want) {
					t.Errorf("lockctl %q: stderr %q, want it to contain %q", tt.args, stderr, want)
				}
			}
		})
	}
}
