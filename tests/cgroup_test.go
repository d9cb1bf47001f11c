package tests

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cgroupDir makes a cgroup at rel under the first of roots that is a
// mounted hierarchy of the wanted version, and removes each level it
// made when the test ends (after the processes moved into it, whose
// cleanups were registered later, are gone). It skips when no such
// hierarchy is mounted.
func cgroupDir(t *testing.T, v2 bool, rel string) string {
	t.Helper()
	roots := []string{"/sys/fs/cgroup/pids"}
	if v2 {
		roots = []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}
	}
	for _, root := range roots {
		if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); (err == nil) != v2 {
			continue
		}
		dir := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		t.Cleanup(func() {
			for d := dir; d != root; d = filepath.Dir(d) {
				if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
					if filepath.Dir(d) != root {
						t.Errorf("removing cgroup %s: %v", d, err)
					}
					return // a top-level level others use (docker/, kubepods.slice/)
				}
			}
		})
		return dir
	}
	t.Skipf("no cgroup v%d hierarchy mounted at %v", map[bool]int{false: 1, true: 2}[v2], roots)
	return ""
}

func moveTo(t *testing.T, dir string, pid int) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644))
}

func hexID(t *testing.T) string {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// TestCgroupContainers moves a listening cbpeer into a Docker-style
// cgroup (cgroupfs driver, the v1 pids hierarchy) and its client into a
// Kubernetes-style one (systemd driver, containerd, cgroup v2): the built
// agent's events carry each one's id and runtime, and each end names the
// other's container.
func TestCgroupContainers(t *testing.T) {
	needRoot(t, "moving processes between cgroups")
	srvID, cliID := hexID(t), hexID(t)
	srvDir := cgroupDir(t, false, "docker/"+srvID)
	cliDir := cgroupDir(t, true, fmt.Sprintf(
		"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice/cri-containerd-%s.scope", cliID[:8], cliID))

	srv := StartPeer(t, nil, "listen", "127.0.0.1:0")
	moveTo(t, srvDir, srv.Cmd.Process.Pid)
	cli := StartPeer(t, nil, "connect", srv.Addr)
	moveTo(t, cliDir, cli.Cmd.Process.Pid)

	for _, format := range []string{"classic", "ecs"} {
		t.Run(format, func(t *testing.T) {
			n := formatNames[format]
			a := RunAgent(t, AgentOptions{Connbeat: fmt.Sprintf("  poll_interval: 300ms\n  aggregation: 1h\n  event_format: %s\n", format)})
			l := a.WaitFor("the listener", func(e Event) bool {
				return e.Str("connbeat.kind") == "listener" && e.Get(n.pid) == srv.PID()
			})
			assert.Equal(t, srvID, l.Str("container.id"))
			assert.Equal(t, "docker", l.Str("container.runtime"))

			in := a.WaitFor("the inbound end", connEvent(n, "inbound", srv.PID()))
			assert.Equal(t, srvID, in.Str("container.id"))
			assert.Equal(t, cli.PID(), in.Get(n.peerPID))
			assert.Equal(t, cliID, in.Str(n.peerCID))

			out := a.WaitFor("the outbound end", connEvent(n, "outbound", cli.PID()))
			assert.Equal(t, cliID, out.Str("container.id"))
			assert.Equal(t, "containerd", out.Str("container.runtime"))
			assert.Equal(t, srv.PID(), out.Get(n.peerPID))
			assert.Equal(t, srvID, out.Str(n.peerCID))
			assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
		})
	}
}
