package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// runLockctl runs lockctl in-process with args and returns its exit status
// and output.
func runLockctl(t *testing.T, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestRunUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // a part of stdout; "" for none at all
		wantStderr string // a part of stderr; "" for none at all
	}{
		{name: "no args", args: nil, wantCode: 2, wantStderr: "lockctl <command> [flags]"},
		{name: "help", args: []string{"help"}, wantCode: 0, wantStdout: "bench "},
		{name: "-h", args: []string{"-h"}, wantCode: 0, wantStdout: "lockctl <command> [flags]"},
		{name: "help bench", args: []string{"help", "bench"}, wantCode: 0, wantStdout: "-workers"},
		{name: "bench -h", args: []string{"bench", "-h"}, wantCode: 0, wantStderr: "-workers"},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, wantStderr: `unknown command "frobnicate"`},
		{name: "help unknown", args: []string{"help", "frobnicate"}, wantCode: 2, wantStderr: `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runLockctl(t, t.Context(), tt.args...)
			if code != tt.wantCode {
				t.Errorf("run(%q) = %d, want %d; stderr:\n%s", tt.args, code, tt.wantCode, stderr)
			}
			check := func(what, got, want string) {
				if want == "" && got != "" || !strings.Contains(got, want) {
					t.Errorf("run(%q) %s = %q, want it to contain %q", tt.args, what, got, want)
				}
			}
			check("stdout", stdout, tt.wantStdout)
			check("stderr", stderr, tt.wantStderr)
		})
	}
}
