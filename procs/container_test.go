package procs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
	"github.com/connbeat/connbeat/procs/container"
)

const dockerID = "3d9b0e1c6f2a4b5c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"

// TestContainerFromCgroup: a process's container comes from its cgroup
// file, read once per process image like its other details; a malformed
// or huge file, or none, leaves the process without a container but with
// its other details.
func TestContainerFromCgroup(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{pid: 70, ppid: 1, comm: "nginx", exe: "/usr/sbin/nginx", sockets: []uint64{1},
		cgroup: "12:pids:/docker/" + dockerID + "\n1:name=systemd:/docker/" + dockerID + "\n0::/\n"})
	fp.add(fakeProcess{pid: 71, ppid: 1, comm: "sshd", exe: "/usr/sbin/sshd", sockets: []uint64{2}})
	fp.add(fakeProcess{pid: 72, ppid: 1, comm: "odd", exe: "/bin/odd", sockets: []uint64{3}, cgroup: "garbage\n"})
	fp.add(fakeProcess{pid: 73, ppid: 1, comm: "huge", exe: "/bin/huge", sockets: []uint64{4},
		cgroup: "0::/docker/" + dockerID + "\n" + strings.Repeat("1:x:/"+strings.Repeat("y", 4000)+"\n", 20)})
	fp.add(fakeProcess{pid: 74, ppid: 1, comm: "gone", exe: "/bin/gone", sockets: []uint64{5}})
	require.NoError(t, os.Remove(filepath.Join(fp.root, "74", "cgroup")))
	r := newResolver(t, fp.root, MetadataOptions{})
	refresh(t, r, 1, 2, 3, 4, 5)

	p, _ := owner(t, r, 1)
	assert.Equal(t, &model.Container{ID: dockerID, Runtime: container.Docker}, p.Container)
	for ino, name := range map[uint64]string{2: "sshd", 3: "odd", 4: "huge", 5: "gone"} {
		p, _ := owner(t, r, ino)
		assert.Nil(t, p.Container, name)
		assert.Equal(t, name, p.Name, "the other details stay")
	}

	// The file is not read again for the same process image: the join
	// caches it with the rest.
	require.NoError(t, os.WriteFile(filepath.Join(fp.root, "71", "cgroup"), []byte("0::/docker/"+dockerID+"\n"), 0o644))
	refresh(t, r, 1, 2, 3, 4, 5)
	p, _ = owner(t, r, 2)
	assert.Nil(t, p.Container, "read once per process image")
}

// cgroupRoots are where this host mounts the cgroup v1 pids hierarchy
// and the v2 one (hybrid: /sys/fs/cgroup/unified; pure v2: /sys/fs/cgroup).
func cgroupRoot(t *testing.T, v2 bool) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("moving a process into a cgroup needs root")
	}
	var candidates []string
	if v2 {
		candidates = []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}
	} else {
		candidates = []string{"/sys/fs/cgroup/pids"}
	}
	for _, dir := range candidates {
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
			continue
		}
		_, err := os.Stat(filepath.Join(dir, "cgroup.controllers"))
		if isV2 := err == nil; isV2 == v2 {
			return dir
		}
	}
	t.Skipf("no cgroup v%d hierarchy mounted at %v", map[bool]int{false: 1, true: 2}[v2], candidates)
	return ""
}

// moveInto makes the cgroup rel under root and moves the holder into it.
// When the test ends it kills the holder, so that the cgroup is empty, and
// removes each level it made, innermost first; a level others use
// (docker/, kubepods/) stays while not empty.
func moveInto(t *testing.T, root, rel string, holder *exec.Cmd) {
	t.Helper()
	dir := filepath.Join(root, rel)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	t.Cleanup(func() {
		_ = holder.Process.Kill()
		_ = holder.Wait()
		for d := dir; d != root; d = filepath.Dir(d) {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				if filepath.Dir(d) != root {
					t.Errorf("removing cgroup %s: %v", d, err)
				}
				return
			}
		}
	})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(holder.Process.Pid)), 0o644))
}

func randomID(t *testing.T) string {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// TestContainerKernelCgroups moves real processes, each holding a real
// socket, into cgroups laid out as Docker's and Kubernetes' cgroupfs and
// systemd drivers make them, in the v1 pids hierarchy and in the v2 one,
// and checks the join gives each socket's owner its container.
func TestContainerKernelCgroups(t *testing.T) {
	for _, tc := range []struct {
		name    string
		v2      bool
		path    func(id string) string
		runtime string
	}{
		{"docker v1", false, func(id string) string { return "docker/" + id }, container.Docker},
		{"docker v2", true, func(id string) string { return "docker/" + id }, container.Docker},
		{"kubepods v1", false, func(id string) string {
			return "kubepods/burstable/pod" + id[:8] + "-1111-2222-3333-444455556666/" + id
		}, container.CRI},
		{"kubepods systemd v2", true, func(id string) string {
			return fmt.Sprintf("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice/cri-containerd-%s.scope", id[:8], id)
		}, container.Containerd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := cgroupRoot(t, tc.v2)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			f, err := ln.(*net.TCPListener).File()
			require.NoError(t, err)
			ino := sockettest.Inode(t, ln.(*net.TCPListener))
			id := randomID(t)
			holder := startHolder(t, f)
			f.Close()
			moveInto(t, root, tc.path(id), holder)
			ln.Close() // the holder is the only owner now

			r := newResolver(t, "/proc", MetadataOptions{})
			_, err = r.Refresh(context.Background(), kernelSockets(t))
			require.NoError(t, err)
			p, _ := r.Owner(ino)
			require.NotNil(t, p, "the holder owns the listener")
			assert.Equal(t, int32(holder.Process.Pid), p.PID)
			assert.Equal(t, &model.Container{ID: id, Runtime: tc.runtime}, p.Container)
		})
	}
}
