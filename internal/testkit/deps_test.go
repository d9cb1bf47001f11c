package testkit

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAgentDoesNotImportTestkit lists what the agent binary is built from
// and fails on any package of this tree: test support must not ship.
// (tools/bench may import it: it is a tool, not the agent.)
func TestAgentDoesNotImportTestkit(t *testing.T) {
	const agent = "github.com/connbeat/connbeat"
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to list the agent's packages: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", agent).Output()
	require.NoError(t, err, "go list -deps %s", agent)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, agent+"/beater", "the list is the agent's")
	for _, pkg := range deps {
		assert.False(t, pkg == agent+"/internal/testkit" || strings.HasPrefix(pkg, agent+"/internal/testkit/"),
			"the agent imports test support %s", pkg)
	}
}
