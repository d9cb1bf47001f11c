// Package child starts the running executable again in a child process:
// either to re-run one test there (RunTest), for tests that change the
// process for good, or as a helper that does one job and exits (Helper).
package child

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// The environment marks a child: testEnv names the test it re-runs,
// helperEnv the helper it is.
const (
	testEnv   = "CONNBEAT_CHILD_TEST"
	helperEnv = "CONNBEAT_CHILD_HELPER"
)

// RunTest runs the test t again in a child process, where it runs body;
// the parent passes, skips or fails as the child did. Tests that take a
// kernel feature away with a seccomp filter use it: the filter lasts for
// the rest of the process's life.
func RunTest(t *testing.T, body func(*testing.T)) {
	t.Helper()
	if name, ok := os.LookupEnv(testEnv); ok {
		// A child never starts another: in the child of a subtest, the
		// enclosing tests pass by their RunTest on the way to it.
		if name == t.Name() {
			body(t)
		}
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("finding the test binary: %v", err)
	}
	cmd := exec.Command(exe, "-test.run="+runPattern(t.Name()), "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), testEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	skip, err := verdict(t.Name(), out, err)
	switch {
	case err != nil:
		t.Fatalf("%v; child:\n%s", err, out)
	case skip:
		t.Skipf("child skipped:\n%s", out)
	}
}

// runPattern is the -test.run pattern that selects only the test (or
// subtest) named name.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// verdict reads how the child that ran the test name ended, from its
// verbose output and its exit error: skipped, passed (both nil), or
// failed. Output that says neither PASS nor SKIP is a failure: the test
// did not run.
func verdict(name string, out []byte, runErr error) (skipped bool, err error) {
	if runErr != nil {
		return false, fmt.Errorf("child failed: %w", runErr)
	}
	switch s := string(out); {
	case strings.Contains(s, "--- SKIP: "+name+" ("):
		return true, nil
	case strings.Contains(s, "--- PASS: "+name+" ("):
		return false, nil
	}
	return false, errors.New("child neither passed nor skipped the test")
}

// Helper is a job the executable can be started again to do in a process
// of its own.
type Helper struct {
	// Name tells the helper from the others the executable serves.
	Name string
	// Main does the job with the arguments Command was given. The process
	// exits 0 when it returns nil, else 1 after printing the error.
	Main func(args []string) error
}

// Command returns a command that starts the executable again as h, with
// args; its stderr is the parent's.
func (h Helper) Command(ctx context.Context, args ...string) (*exec.Cmd, error) {
	if name, ok := os.LookupEnv(helperEnv); ok {
		// Serve clears the mark before a helper runs: this process was
		// started as a helper and is running the program instead, and
		// its children would do the same, without end.
		return nil, fmt.Errorf("started as helper %q but running the program: call child.Serve first thing in main", name)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the executable to start %s child: %w", h.Name, err)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+h.Name)
	cmd.Stderr = os.Stderr
	return cmd, nil
}

// Serve makes the process the helper Command started it as, and exits
// when the helper is done; in any other process it returns at once. Call
// it first thing in main (or TestMain) with every helper the executable
// starts: a child must not go on to run the program (or the tests).
func Serve(helpers ...Helper) {
	name, ok := os.LookupEnv(helperEnv)
	if !ok {
		return
	}
	for _, h := range helpers {
		if h.Name == name {
			// A helper may start helpers of its own (see Command).
			os.Unsetenv(helperEnv)
			if err := h.Main(os.Args[1:]); err != nil {
				fmt.Fprintf(os.Stderr, "%s child: %v\n", name, err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	fmt.Fprintf(os.Stderr, "started as helper %q, which this executable does not serve\n", name)
	os.Exit(2)
}
