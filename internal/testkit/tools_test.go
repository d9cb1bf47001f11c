package testkit

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// recorder is a testing.TB that records how a test would have stopped.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Helper()               { r.TB.Helper() }
func (r *recorder) Skip(...any)           { r.skipped = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

// TestRequireToolStrict: a missing tool skips the test outside CI and
// fails it in CI, or where .ci/run asks for every tool; a tool that is
// there is returned with its path.
func TestRequireToolStrict(t *testing.T) {
	for _, tc := range []struct {
		name, ci, require string
		wantFail          bool
	}{
		{name: "outside CI", wantFail: false},
		{name: "CI=true", ci: "true", wantFail: true},
		{name: "CONNBEAT_REQUIRE_TOOLS=1", require: "1", wantFail: true},
		{name: "CI=false", ci: "false", wantFail: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			t.Setenv("CONNBEAT_REQUIRE_TOOLS", tc.require)
			r := &recorder{TB: t}
			RequireTool(r, "connbeat-no-such-tool")
			assert.Equal(t, tc.wantFail, r.failed, "failed")
			assert.Equal(t, !tc.wantFail, r.skipped, "skipped")

			r = &recorder{TB: t}
			assert.Equal(t, "/bin/sh", RequireTool(r, "/bin/sh"))
			assert.False(t, r.failed || r.skipped, "a tool that is there")
		})
	}
}
