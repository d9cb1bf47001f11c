package container

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/model"
)

const (
	id1 = "3d9b0e1c6f2a4b5c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
	id2 = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
)

// TestParse feeds whole /proc/PID/cgroup files as runtimes and hosts
// write them: cgroup v1 (a line a hierarchy), v2 (one "0::" line) and
// hybrid.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		want *model.Container
	}{
		{"host process, hybrid", "9:name=systemd:/\n4:memory:/process_api/de6c7976bf96f9dbdbf65a203527415a\n0::/\n", nil},
		{"host service, v2", "0::/system.slice/sshd.service\n", nil},
		{"empty file (a kernel thread)", "", nil},
		{"docker cgroupfs v1", "12:pids:/docker/" + id1 + "\n11:memory:/docker/" + id1 + "\n1:name=systemd:/docker/" + id1 + "\n0::/\n",
			&model.Container{ID: id1, Runtime: Docker}},
		{"docker systemd v2", "0::/system.slice/docker-" + id1 + ".scope\n", &model.Container{ID: id1, Runtime: Docker}},
		{"docker v1 line first, v2 root", "0::/\n5:cpu,cpuacct:/docker/" + id1 + "\n", &model.Container{ID: id1, Runtime: Docker}},
		{"docker in docker: the innermost", "0::/docker/" + id1 + "/docker/" + id2 + "\n", &model.Container{ID: id2, Runtime: Docker}},
		{"rootless docker", "0::/user.slice/user-1000.slice/user@1000.service/docker-" + id1 + ".scope\n", &model.Container{ID: id1, Runtime: Docker}},
		{"kubepods cgroupfs v1", "11:memory:/kubepods/burstable/pod0b8f0a2e-7c1d-4f3a-9a6b-2c4d5e6f7a8b/" + id1 + "\n",
			&model.Container{ID: id1, Runtime: CRI}},
		{"kubepods guaranteed cgroupfs", "0::/kubepods/pod0b8f0a2e-7c1d-4f3a-9a6b-2c4d5e6f7a8b/" + id2 + "\n",
			&model.Container{ID: id2, Runtime: CRI}},
		{"kubepods systemd containerd v2", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b8f0a2e_7c1d_4f3a_9a6b_2c4d5e6f7a8b.slice/cri-containerd-" + id1 + ".scope\n",
			&model.Container{ID: id1, Runtime: Containerd}},
		{"kubepods systemd cri-o", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b8f0a2e_7c1d.slice/crio-" + id2 + ".scope\n",
			&model.Container{ID: id2, Runtime: CRIO}},
		{"cri-o conmon is not the container", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b8f.slice/crio-conmon-" + id2 + ".scope\n", nil},
		{"cri-o cgroupfs", "0::/kubepods/besteffort/pod0b8f/crio-" + id1 + "\n", &model.Container{ID: id1, Runtime: CRIO}},
		{"kubepods systemd docker", "3:cpu:/kubepods.slice/kubepods-pod0b8f.slice/docker-" + id1 + ".scope\n", &model.Container{ID: id1, Runtime: Docker}},
		{"kubepods pod cgroup itself", "0::/kubepods/besteffort/pod0b8f0a2e-7c1d-4f3a-9a6b-2c4d5e6f7a8b\n", nil},
		{"podman systemd v2", "0::/machine.slice/libpod-" + id1 + ".scope/container\n", &model.Container{ID: id1, Runtime: Podman}},
		{"podman rootless", "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id2 + ".scope\n", &model.Container{ID: id2, Runtime: Podman}},
		{"podman conmon", "0::/machine.slice/libpod-conmon-" + id1 + ".scope\n", nil},
		{"podman cgroupfs", "7:memory:/libpod_parent/libpod-" + id1 + "\n", &model.Container{ID: id1, Runtime: Podman}},
		{"nspawn machine scope", "0::/machine.slice/machine-debian\\x2dbuild.scope/payload\n", &model.Container{ID: "debian-build", Runtime: Nspawn}},
		{"nspawn machine scope v1", "1:name=systemd:/machine.slice/machine-web1.scope\n", &model.Container{ID: "web1", Runtime: Nspawn}},
		{"nspawn service", "0::/machine.slice/systemd-nspawn@db.service/payload/system.slice/postgresql.service\n", &model.Container{ID: "db", Runtime: Nspawn}},
		{"libvirt vm is not a container", "0::/machine.slice/machine-qemu\\x2d1\\x2dvm1.scope/libvirt/emulator\n", nil},
		{"machine scope outside machine.slice", "0::/user.slice/machine-x.scope\n", nil},
		{"short hex is no id", "0::/docker/3d9b0e1c6f2a\n", nil},
		{"upper-case hex is no id", "0::/docker/" + strings.ToUpper(id1) + "\n", nil},
		{"id under an unknown parent", "0::/custom/" + id1 + "\n", nil},
		{"colons in the path", "0::/odd:name/docker-" + id1 + ".scope\n", &model.Container{ID: id1, Runtime: Docker}},
		{"no trailing newline", "0::/docker/" + id1, &model.Container{ID: id1, Runtime: Docker}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tc.file))
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseErrors(t *testing.T) {
	_, err := Parse(strings.NewReader("0::/\nnot a cgroup line\n"))
	assert.EqualError(t, err, `cgroup file line 2: "not a cgroup line" is not hierarchy:controllers:path`)

	_, err = Parse(strings.NewReader("0::/" + strings.Repeat("a", MaxBytes)))
	assert.True(t, errors.Is(err, ErrTooLarge), "got %v", err)

	_, err = Parse(strings.NewReader(strings.Repeat("x", 200)))
	require.Error(t, err)
	assert.Less(t, len(err.Error()), 150, "hostile text is clipped in the message")

	// One line of almost MaxBytes is still read.
	got, err := Parse(strings.NewReader("0::/" + strings.Repeat("d/", (MaxBytes-200)/2) + "docker/" + id1 + "\n"))
	require.NoError(t, err)
	assert.Equal(t, &model.Container{ID: id1, Runtime: Docker}, got)
}

func TestMachineNames(t *testing.T) {
	for in, want := range map[string]*model.Container{
		"web":                   {ID: "web", Runtime: Nspawn},
		`a\x2db\x2ec`:           {ID: "a-b.c", Runtime: Nspawn},
		`bad\x2`:                nil, // a cut escape
		`bad\xzz`:               nil,
		`sp\x20ace`:             nil, // not a host name
		strings.Repeat("m", 65): nil,
		"":                      nil,
		`qemu\x2d3\x2dwindows`:  nil,
	} {
		assert.Equal(t, want, machine(in), "%q", in)
	}
}

// FuzzParse: whatever the file, Parse returns a container with a
// well-formed id or an error, and never panics.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"0::/\n",
		"12:pids:/docker/" + id1 + "\n0::/\n",
		"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-" + id1 + ".scope\n",
		"0::/kubepods/burstable/pod1/" + id2 + "\n",
		"0::/machine.slice/machine-a\\x2db.scope/payload\n",
		"0::/machine.slice/systemd-nspawn@x.service\n",
		"garbage",
		"1:a:b:c:d\n\n\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(strings.NewReader(string(data)))
		if err != nil {
			assert.Nil(t, c)
			return
		}
		if c == nil {
			return
		}
		switch c.Runtime {
		case Nspawn:
			assert.NotEmpty(t, c.ID)
			assert.LessOrEqual(t, len(c.ID), maxMachineName)
		case Docker, Containerd, CRIO, Podman, CRI:
			assert.True(t, isID(c.ID), "id %q", c.ID)
			assert.Contains(t, string(data), c.ID, "the id comes from the input")
		default:
			t.Fatalf("unknown runtime %q", c.Runtime)
		}
	})
}

// BenchmarkParse: a hybrid host's cgroup file of a Docker container (one
// line a v1 hierarchy, and the v2 one), read once per process image.
func BenchmarkParse(b *testing.B) {
	var sb strings.Builder
	for i, c := range []string{"pids", "memory", "devices", "freezer", "blkio", "cpu,cpuacct", "cpuset", "net_cls", "perf_event", "hugetlb", "rdma", "name=systemd"} {
		fmt.Fprintf(&sb, "%d:%s:/docker/%s\n", 12-i, c, id1)
	}
	sb.WriteString("0::/\n")
	file := sb.String()
	b.ReportAllocs()
	for b.Loop() {
		if c, err := Parse(strings.NewReader(file)); err != nil || c == nil {
			b.Fatal(c, err)
		}
	}
}
