package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether every tool and server tools/test-deps.sh installs
// must be there: in CI (CI=true, which the CI system sets) or with
// CONNBEAT_REQUIRE_TOOLS=1 (.ci/run sets it). There a missing one means the
// install step broke, and a test that would skip for it fails instead, so a
// broken install cannot turn into a green run.
func Strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("CONNBEAT_REQUIRE_TOOLS") == "1"
}

// Missing stops t because something tools/test-deps.sh installs (a tool, a
// server, a Python module) cannot be used here: it skips the test, or fails
// it under Strict.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (tools/test-deps.sh installs it)"
	if Strict() {
		t.Fatalf("%s; CI requires it", msg)
	} else {
		t.Skip(msg)
	}
}

// RequireTool returns the path of the program name (a name looked up on
// PATH, or an absolute path), or stops the test with Missing.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s is not installed: %v", name, err)
	}
	return path
}
