package event

import (
	"testing"

	"github.com/elastic/elastic-agent-libs/mapstr"
	"github.com/stretchr/testify/assert"

	"github.com/connbeat/connbeat/model"
)

const cid = "3d9b0e1c6f2a4b5c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"

// identityReport is an inbound connection from a client container to a
// server on this host, both ends' processes known.
func identityReport() *model.Report {
	server := &model.Process{PID: 10, Name: "nginx", Binary: "nginx", Executable: "/usr/sbin/nginx",
		Container: &model.Container{ID: cid, Runtime: "docker"}}
	client := &model.Process{PID: 20, Name: "curl", Binary: "curl", Executable: "/usr/bin/curl",
		Container: &model.Container{ID: "web1", Runtime: "systemd-nspawn"}}
	r := report(model.Connection, model.Inbound, "172.17.0.2", 80, "172.17.0.3", 40000, server)
	r.Peer = client
	return r
}

func TestECSIdentity(t *testing.T) {
	f := NewBuilder(ECS, host).Build(identityReport(), ts).Fields
	assert.Equal(t, mapstr.M{"id": cid, "runtime": "docker"}, f["container"])
	assert.Equal(t, mapstr.M{
		"process":   mapstr.M{"pid": int32(20), "name": "curl", "executable": "/usr/bin/curl"},
		"container": mapstr.M{"id": "web1", "runtime": "systemd-nspawn"},
	}, f["connbeat"].(mapstr.M)["peer"])
	assert.NotContains(t, f, "remote_process")
}

func TestClassicIdentity(t *testing.T) {
	f := NewBuilder(Classic, host).Build(identityReport(), ts).Fields
	assert.Equal(t, mapstr.M{"id": cid, "runtime": "docker"}, f["container"])
	assert.Equal(t, mapstr.M{"pid": int32(20), "name": "curl", "binary": "curl", "exe": "/usr/bin/curl"}, f["remote_process"])
	assert.Equal(t, mapstr.M{"id": "web1", "runtime": "systemd-nspawn"}, f["remote_container"])
	assert.NotContains(t, f["connbeat"], "peer")
}

// TestIdentityAbsent: no container and no peer, no fields; a peer outside
// containers has no container fields.
func TestIdentityAbsent(t *testing.T) {
	for _, format := range Formats() {
		r := identityReport()
		r.Process.Container = nil
		r.Peer.Container = nil
		f := NewBuilder(format, host).Build(r, ts).Fields
		assert.NotContains(t, f, "container", format)
		assert.NotContains(t, f, "remote_container", format)
		if format == ECS {
			assert.NotContains(t, f["connbeat"].(mapstr.M)["peer"], "container")
		}
		r.Peer = nil
		f = NewBuilder(format, host).Build(r, ts).Fields
		assert.NotContains(t, f, "remote_process", format)
		assert.NotContains(t, f["connbeat"], "peer", format)
	}
}

// TestFlowContainer: a conntrack flow's local process carries its
// container in both formats.
func TestFlowContainer(t *testing.T) {
	for _, format := range Formats() {
		fl := dnatDestroy()
		p := *fl.Process
		p.Container = &model.Container{ID: cid, Runtime: "docker"}
		fl.Process = &p
		f := NewBuilder(format, host).BuildFlow(fl, ts).Fields
		assert.Equal(t, mapstr.M{"id": cid, "runtime": "docker"}, f["container"], format)
	}
}
