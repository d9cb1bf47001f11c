package event

import (
	"github.com/connbeat/connbeat/model"
	"github.com/elastic/elastic-agent-libs/mapstr"
)

// Identity fields: the container of the local process and the process at
// the other end of a local connection. The local container is
// `container.*` in both formats (ECS's name, and where the original
// connbeat's classic events had it), so that libbeat's add_docker_metadata
// and add_kubernetes_metadata processors find the id at the same path
// whatever the format.

// putContainer sets container.id and container.runtime when the process
// runs in a container.
func putContainer(f mapstr.M, p *model.Process) {
	if p == nil || p.Container == nil {
		return
	}
	f["container"] = containerFields(p.Container)
}

func containerFields(c *model.Container) mapstr.M {
	m := mapstr.M{"id": c.ID}
	putNonEmpty(m, "runtime", c.Runtime)
	return m
}

// putClassicPeer sets the classic format's remote_process (beside
// local_process) and remote_container (beside container).
func putClassicPeer(f mapstr.M, p *model.Process) {
	if p == nil {
		return
	}
	rp := mapstr.M{"pid": p.PID, "name": p.Name, "binary": p.Binary}
	putNonEmpty(rp, "exe", p.Executable)
	f["remote_process"] = rp
	if p.Container != nil {
		f["remote_container"] = containerFields(p.Container)
	}
}

// ecsPeer is connbeat.peer in ECS events: ECS has no field set for a
// second process, so the peer's process and container are named as ECS
// names the local ones, under connbeat.peer.
func ecsPeer(p *model.Process) mapstr.M {
	proc := mapstr.M{"pid": p.PID, "name": p.Binary}
	putNonEmpty(proc, "executable", p.Executable)
	peer := mapstr.M{"process": proc}
	if p.Container != nil {
		peer["container"] = containerFields(p.Container)
	}
	return peer
}
