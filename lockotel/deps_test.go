package lockotel_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestCoreImportsNoOpenTelemetry pins issue 4 item 3: the metrics adapter's
// dependencies stay out of the import graph of package lock and its
// backends, so that only programs that import lockotel build OpenTelemetry.
func TestCoreImportsNoOpenTelemetry(t *testing.T) {
	core := []string{
		"github.com/leaselock/lock",
		"github.com/leaselock/lock/memory",
		"github.com/leaselock/lock/rueidislock",
	}
	for _, pkg := range deps(t, core...) {
		if strings.HasPrefix(pkg, "go.opentelemetry.io/") {
			t.Errorf("the core's import graph has %s", pkg)
		}
	}
	// The check can see OpenTelemetry where it is.
	if own := deps(t, "github.com/leaselock/lock/lockotel"); !slices.Contains(own, "go.opentelemetry.io/otel/metric") {
		t.Errorf("go list -deps lockotel lists no go.opentelemetry.io/otel/metric:\n%s", strings.Join(own, "\n"))
	}
}

// deps returns the packages pkgs import, directly or not, test files apart.
func deps(t *testing.T, pkgs ...string) []string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command, to list imports: %v", err)
	}
	out, err := exec.Command(goCmd, append([]string{"list", "-deps"}, pkgs...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list -deps: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	return strings.Fields(string(out))
}
