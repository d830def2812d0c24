package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// execEnv, set to 1, makes the test binary run lockctl's main instead of
// the tests: the end-to-end tests run lockctl as a process of its own this
// way, with no build step.
const execEnv = "LOCKCTL_TEST_EXEC"

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		main() // exits
	}
	// LOCK_CONFIG from the environment would choose the backend of the
	// in-process runs: the tests set it where they mean to.
	os.Unsetenv("LOCK_CONFIG")
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
		{name: "help lists run", args: []string{"help"}, wantCode: 0, wantStdout: "run "},
		{name: "help lists inspect", args: []string{"help"}, wantCode: 0, wantStdout: "inspect "},
		{name: "-h", args: []string{"-h"}, wantCode: 0, wantStdout: "lockctl <command> [flags]"},
		{name: "help bench", args: []string{"help", "bench"}, wantCode: 0, wantStdout: "-workers"},
		{name: "help run", args: []string{"help", "run"}, wantCode: 0, wantStdout: "LOCK_TOKEN"},
		{name: "help inspect", args: []string{"help", "inspect"}, wantCode: 0, wantStdout: "quorum"},
		{name: "run -h", args: []string{"run", "-h"}, wantCode: 0, wantStderr: "-grace"},
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
