package event

import (
	"strings"
	"testing"

	"github.com/elastic/beats/v7/libbeat/processors/add_kubernetes_metadata"
	"github.com/elastic/elastic-agent-autodiscover/kubernetes"
	conf "github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/model"
	"github.com/connbeat/connbeat/procs/container"
)

// TestKubernetesMetadataMatches runs the matcher and indexer of
// docs/configuration.md's add_kubernetes_metadata config (libbeat's own
// code; no cluster is needed for them): the id connbeat reads from a
// kubepods cgroup path, put in container.id by either format, is the
// index the container indexer files the pod under, from the pod status's
// containerID as the kubelet reports it ("containerd://<id>").
func TestKubernetesMetadataMatches(t *testing.T) {
	c, err := container.Parse(strings.NewReader("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b8f0a2e_7c1d.slice/cri-containerd-" + cid + ".scope\n"))
	require.NoError(t, err)
	require.NotNil(t, c)

	indexer, err := add_kubernetes_metadata.NewContainerIndexer(*conf.NewConfig(), nil)
	require.NoError(t, err)
	pod := &kubernetes.Pod{Status: kubernetes.PodStatus{ContainerStatuses: []kubernetes.PodContainerStatus{
		{Name: "sidecar", ContainerID: "containerd://" + strings.Repeat("0", 64)},
		{Name: "web", ContainerID: "containerd://" + cid},
	}}}
	assert.Contains(t, indexer.GetIndexes(pod), cid)

	matcherCfg, err := conf.NewConfigFrom(map[string]any{"lookup_fields": []string{"container.id"}})
	require.NoError(t, err)
	matcher, err := add_kubernetes_metadata.NewFieldMatcher(*matcherCfg, logp.NewNopLogger())
	require.NoError(t, err)
	for _, format := range Formats() {
		p := *proc
		p.Container = c
		ev := NewBuilder(format, host).Build(report(model.Connection, model.Outbound, "10.0.0.1", 40000, "10.0.0.9", 443, &p), ts)
		assert.Equal(t, cid, matcher.MetadataIndex(ev.Fields), format)
	}
}
