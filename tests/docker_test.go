package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Real containers: images built FROM scratch around a static cbpeer (no
// registry is reachable), run by the host's Docker Engine, and the agent
// configured with libbeat's add_docker_metadata processor as
// docs/configuration.md#containers-and-kubernetes documents it.

// dockerMetadata returns the add_docker_metadata config that
// docs/configuration.md gives, so that the tested config is the
// documented one.
func dockerMetadata(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../docs/configuration.md")
	require.NoError(t, err)
	for _, block := range strings.Split(string(b), "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if strings.Contains(block, "add_docker_metadata:") {
			return block
		}
	}
	t.Fatal("docs/configuration.md has no add_docker_metadata config")
	return ""
}

// cbpeerImage builds an image around a static cbpeer and removes it when
// the test ends; it returns the image's tag.
func cbpeerImage(t *testing.T) string {
	t.Helper()
	needRoot(t, "the Docker Engine's socket is root's")
	needDocker(t)
	ctx := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(ctx, "cbpeer"), "./testdata/peer")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "static cbpeer: %s", out)
	require.NoError(t, os.WriteFile(filepath.Join(ctx, "Dockerfile"),
		[]byte("FROM scratch\nCOPY cbpeer /cbpeer\nENTRYPOINT [\"/cbpeer\"]\n"), 0o644))
	image := strings.ToLower(uniqueName(t, "connbeat-ident")) + ":test"
	docker(t, "build", "-q", "-t", image, ctx)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })
	return image
}

// container is a running container of the test's.
type container struct {
	Name, ID string
	PID      float64 // its cbpeer's pid in the host's pid namespace
	IP       string  // its address on its first network; "" with --network host
}

// runContainer starts a container (docker run -d ARGS IMAGE CMD...), waits
// for cbpeer's ready line, and removes it when the test ends.
func runContainer(t *testing.T, name string, runArgs []string, image string, cmd ...string) container {
	t.Helper()
	args := append(append([]string{"run", "-d", "--name", name}, runArgs...), image)
	docker(t, append(args, cmd...)...)
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	eventually(t, nil, 30*time.Second, name+" ready", func() bool {
		return strings.Contains(docker(t, "logs", name), "ready")
	})
	c := container{Name: name}
	inspect := docker(t, "inspect", "-f", "{{.Id}} {{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name)
	f := strings.Fields(inspect)
	require.GreaterOrEqual(t, len(f), 2, "docker inspect said %q", inspect)
	c.ID = f[0]
	pid, err := strconv.Atoi(f[1])
	require.NoError(t, err)
	c.PID = float64(pid)
	if len(f) > 2 {
		c.IP = f[2]
	}
	require.Len(t, c.ID, 64)
	return c
}

// agentWithDocker runs the agent in format with add_docker_metadata.
func agentWithDocker(t *testing.T, format string) *Agent {
	t.Helper()
	return RunAgent(t, AgentOptions{
		Connbeat: fmt.Sprintf("  poll_interval: 300ms\n  aggregation: 1h\n  event_format: %s\n", format),
		Extra:    dockerMetadata(t),
	})
}

// names are where each format puts the fields the tests look at.
type names struct {
	pid, lport, rport, peerPID, peerCID string
}

var formatNames = map[string]names{
	"classic": {"local_process.pid", "local_port", "remote_port", "remote_process.pid", "remote_container.id"},
	"ecs":     {"process.pid", "", "", "connbeat.peer.process.pid", "connbeat.peer.container.id"},
}

// connEvent matches a connection event of pid in direction dir.
func connEvent(n names, dir string, pid float64) func(Event) bool {
	return func(e Event) bool {
		return e.Str("connbeat.kind") == "connection" && e.Str("connbeat.direction") == dir && e.Get(n.pid) == pid
	}
}

// checkContainer asserts the container fields connbeat (id, runtime) and
// add_docker_metadata (name, image) put in an event.
func checkContainer(t *testing.T, e Event, c container, image string) {
	t.Helper()
	assert.Equal(t, c.ID, e.Str("container.id"), "docker inspect's id")
	assert.Equal(t, "docker", e.Str("container.runtime"))
	assert.Equal(t, c.Name, e.Str("container.name"), "add_docker_metadata's name")
	assert.Equal(t, image, e.Str("container.image.name"), "add_docker_metadata's image")
}

// TestDockerHostNetwork: a container on the host's network listens on
// loopback and a host process connects to it. In both formats the
// container's listener and inbound events carry its real id, and the
// processor's name and image; each end's event names the other end's
// process, the client's the container's too.
func TestDockerHostNetwork(t *testing.T) {
	image := cbpeerImage(t)
	port := freePort(t)
	name := strings.ToLower(uniqueName(t, "connbeat-host"))
	srv := runContainer(t, name, []string{"--network", "host"}, image, "listen", fmt.Sprintf("127.0.0.1:%d", port))
	client := StartPeer(t, nil, "connect", fmt.Sprintf("127.0.0.1:%d", port))

	for _, format := range []string{"classic", "ecs"} {
		t.Run(format, func(t *testing.T) {
			n := formatNames[format]
			a := agentWithDocker(t, format)
			l := a.WaitFor("the container's listener", func(e Event) bool {
				return e.Str("connbeat.kind") == "listener" && e.Get(n.pid) == srv.PID
			})
			checkContainer(t, l, srv, image)

			in := a.WaitFor("the container's inbound connection", connEvent(n, "inbound", srv.PID))
			checkContainer(t, in, srv, image)
			assert.Equal(t, client.PID(), in.Get(n.peerPID), "the inbound end names the host client")
			assert.Nil(t, in.Get(n.peerCID), "the client runs in no container")

			out := a.WaitFor("the host client's connection", connEvent(n, "outbound", client.PID()))
			assert.Nil(t, out.Get("container.id"), "the client runs in no container")
			assert.Equal(t, srv.PID, out.Get(n.peerPID), "the outbound end names the container's process")
			assert.Equal(t, srv.ID, out.Str(n.peerCID))
			assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
		})
	}
}

// TestDockerBridgePeers: on a user-defined bridge network the test
// creates, one container listens and another connects to it. The two
// ends live in the containers' own network namespaces: each end's event
// carries its container's id, name and image, and names the other end's
// process and container. It needs every namespace read
// (connbeat.network_namespaces: all).
func TestDockerBridgePeers(t *testing.T) {
	image := cbpeerImage(t)
	network := strings.ToLower(uniqueName(t, "connbeat-net"))
	docker(t, "network", "create", network)
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", network).Run() })
	srv := runContainer(t, network+"-srv", []string{"--network", network}, image, "listen", "0.0.0.0:8080")
	require.NotEmpty(t, srv.IP)
	cli := runContainer(t, network+"-cli", []string{"--network", network}, image, "connect", srv.IP+":8080")

	for _, format := range []string{"classic", "ecs"} {
		t.Run(format, func(t *testing.T) {
			n := formatNames[format]
			a := agentWithDocker(t, format)
			in := a.WaitFor("the server container's inbound connection", connEvent(n, "inbound", srv.PID))
			checkContainer(t, in, srv, image)
			assert.Equal(t, cli.PID, in.Get(n.peerPID), "the server's end names the client container's process")
			assert.Equal(t, cli.ID, in.Str(n.peerCID))

			out := a.WaitFor("the client container's connection", connEvent(n, "outbound", cli.PID))
			checkContainer(t, out, cli, image)
			assert.Equal(t, srv.PID, out.Get(n.peerPID), "the client's end names the server container's process")
			assert.Equal(t, srv.ID, out.Str(n.peerCID))
			assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
		})
	}
}

// TestDockerPublishedPort: a host process reaches a container through a
// port published with -p on the default bridge, at a non-loopback
// address of the host (Docker's DNAT, not its userland proxy). The
// container's listener and inbound events carry its id, name and image;
// the client's own event is the host's, without a container. The two
// ends' addresses differ by the NAT, so neither names the other.
func TestDockerPublishedPort(t *testing.T) {
	image := cbpeerImage(t)
	hostPort := freePort(t)
	name := strings.ToLower(uniqueName(t, "connbeat-pub"))
	srv := runContainer(t, name, []string{"-p", fmt.Sprintf("%d:8080", hostPort)}, image, "listen", "0.0.0.0:8080")
	host := hostAddr(t)
	client := StartPeer(t, nil, "connect", fmt.Sprintf("%s:%d", host, hostPort))

	a := agentWithDocker(t, "ecs")
	n := formatNames["ecs"]
	l := a.WaitFor("the container's listener", func(e Event) bool {
		return e.Str("connbeat.kind") == "listener" && e.Get(n.pid) == srv.PID
	})
	checkContainer(t, l, srv, image)
	assert.Equal(t, 8080.0, l.Get("server.port"))
	in := a.WaitFor("the container's inbound connection from the host client", func(e Event) bool {
		return connEvent(n, "inbound", srv.PID)(e) && e.Str("source.ip") == host
	})
	checkContainer(t, in, srv, image)
	out := a.WaitFor("the host client's connection", connEvent(n, "outbound", client.PID()))
	assert.Equal(t, float64(hostPort), out.Get("destination.port"))
	assert.Nil(t, out.Get("container.id"))
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}
