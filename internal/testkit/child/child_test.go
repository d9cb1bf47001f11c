package child

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	echo = Helper{Name: "echo", Main: func(args []string) error {
		fmt.Println(strings.Join(args, " "))
		return nil
	}}
	fail = Helper{Name: "fail", Main: func([]string) error { return errors.New("no luck") }}
	// nested starts echo from inside a helper.
	nested = Helper{Name: "nested", Main: func(args []string) error {
		cmd, err := echo.Command(context.Background(), args...)
		if err != nil {
			return err
		}
		cmd.Stdout = os.Stdout
		return cmd.Run()
	}}
)

func TestMain(m *testing.M) {
	Serve(echo, fail, nested)
	os.Exit(m.Run())
}

// TestRunTest checks that body runs in the child, and only there, for a
// test and for a subtest.
func TestRunTest(t *testing.T) {
	check := func(t *testing.T) {
		ran := false
		RunTest(t, func(t *testing.T) {
			ran = true
			assert.Equal(t, t.Name(), os.Getenv(testEnv))
		})
		assert.Equal(t, os.Getenv(testEnv) == t.Name(), ran, "body runs in the child only")
	}
	check(t)
	t.Run("sub (test)", check)
}

func TestVerdict(t *testing.T) {
	const name = "TestX/sub"
	tests := []struct {
		desc    string
		out     string
		runErr  error
		skipped bool
		err     string
	}{
		{desc: "passed", out: "=== RUN   TestX/sub\n--- PASS: TestX/sub (0.01s)\nPASS\n"},
		{desc: "skipped", out: "--- SKIP: TestX/sub (0.00s)\n    x_test.go:1: no netlink\nPASS\n", skipped: true},
		{desc: "failed", out: "--- FAIL: TestX/sub (0.00s)\nFAIL\n", runErr: &exec.ExitError{}, err: "child failed"},
		{desc: "no such test", out: "testing: warning: no tests to run\nPASS\n", err: "neither passed nor skipped"},
		{desc: "another test passed", out: "--- PASS: TestX/subtle (0.00s)\nPASS\n", err: "neither passed nor skipped"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			skipped, err := verdict(name, []byte(tt.out), tt.runErr)
			assert.Equal(t, tt.skipped, skipped)
			if tt.err == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tt.err)
			}
		})
	}
}

func TestRunPattern(t *testing.T) {
	assert.Equal(t, "^TestA$", runPattern("TestA"))
	assert.Equal(t, `^TestA$/^tcp_info=true\(x\)$`, runPattern("TestA/tcp_info=true(x)"))
}

// TestHelper starts this test binary as helpers: one prints its arguments,
// one fails, and a name it does not serve is refused.
func TestHelper(t *testing.T) {
	cmd, err := echo.Command(context.Background(), "a", "b c")
	require.NoError(t, err)
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "a b c\n", string(out))

	for _, tt := range []struct {
		h      Helper
		code   int
		stderr string
	}{
		{fail, 1, "fail child: no luck\n"},
		{Helper{Name: "unknown"}, 2, `started as helper "unknown", which this executable does not serve` + "\n"},
	} {
		cmd, err := tt.h.Command(context.Background())
		require.NoError(t, err)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err = cmd.Run()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, tt.h.Name)
		assert.Equal(t, tt.code, exit.ExitCode(), tt.h.Name)
		assert.Equal(t, tt.stderr, stderr.String(), tt.h.Name)
	}
}

// TestHelperStartsHelper: a helper may start another helper.
func TestHelperStartsHelper(t *testing.T) {
	cmd, err := nested.Command(context.Background(), "a", "b")
	require.NoError(t, err)
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "a b\n", string(out))
}

// TestUnservedHelperStartsNothing: a process started as a helper that
// runs the program instead (it did not call Serve) is refused more
// children, which would do the same without end.
func TestUnservedHelperStartsNothing(t *testing.T) {
	t.Setenv(helperEnv, "echo")
	_, err := echo.Command(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "call child.Serve first thing")
}
