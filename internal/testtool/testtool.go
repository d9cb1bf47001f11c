// Package testtool finds the programs tests drive (tmux, Graphviz's dot):
// a test skips, naming the missing program and its Debian package, where
// the program is not installed, and fails in CI (CI=true), where
// tools/test-deps.sh installs it.
package testtool

import (
	"os"
	"os/exec"
	"testing"
)

// Require returns the path of program, installed by Debian's pkg.
func Require(t testing.TB, program, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (Debian package %s): tools/test-deps.sh installs it for CI", program, pkg)
	}
	t.Skipf("%s is not installed (Debian package %s; tools/test-deps.sh installs it)", program, pkg)
	return ""
}
