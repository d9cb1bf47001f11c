package event

import (
	"os"
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

// yamlBlocks returns the ```yaml blocks of a document that hold s.
func yamlBlocks(t *testing.T, path, s string) []*conf.C {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []*conf.C
	for _, block := range strings.Split(string(b), "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if strings.Contains(block, s) {
			c, err := conf.NewConfigWithYAML([]byte(block), path)
			require.NoError(t, err, "%s: %s", path, block)
			out = append(out, c)
		}
	}
	require.NotEmpty(t, out, "%s has no yaml block with %s", path, s)
	return out
}

// documentedProcessors are the parts of the processor configs the
// documentation gives that decide what they match on.
type documentedProcessors struct {
	Processors []struct {
		Docker *struct {
			MatchFields []string `config:"match_fields"`
		} `config:"add_docker_metadata"`
		Kubernetes *struct {
			Indexers add_kubernetes_metadata.PluginConfig `config:"indexers"`
			Matchers add_kubernetes_metadata.PluginConfig `config:"matchers"`
		} `config:"add_kubernetes_metadata"`
	} `config:"processors"`
}

// TestDocumentedKubernetesMetadata builds add_kubernetes_metadata's
// indexers and matchers (libbeat's code; no cluster is needed for them)
// from the config README and docs/configuration.md give: the id connbeat
// reads from a kubepods cgroup path and puts in container.id, in either
// format, is an index the indexers file the pod under, from the pod
// status's containerID as the kubelet reports it ("containerd://<id>").
// The add_docker_metadata configs given match on container.id; the real
// Docker Engine test (tests/docker_test.go) runs the one of
// docs/configuration.md.
func TestDocumentedKubernetesMetadata(t *testing.T) {
	c, err := container.Parse(strings.NewReader("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b8f0a2e_7c1d.slice/cri-containerd-" + cid + ".scope\n"))
	require.NoError(t, err)
	require.NotNil(t, c)
	pod := &kubernetes.Pod{Status: kubernetes.PodStatus{ContainerStatuses: []kubernetes.PodContainerStatus{
		{Name: "sidecar", ContainerID: "containerd://" + strings.Repeat("0", 64)},
		{Name: "web", ContainerID: "containerd://" + cid},
	}}}

	var kubes, dockers int
	for _, doc := range []string{"../README.md", "../docs/configuration.md"} {
		for _, block := range append(yamlBlocks(t, doc, "add_docker_metadata:"), yamlBlocks(t, doc, "add_kubernetes_metadata:")...) {
			var cfg documentedProcessors
			require.NoError(t, block.Unpack(&cfg), doc)
			for _, p := range cfg.Processors {
				if p.Docker != nil {
					dockers++
					assert.Equal(t, []string{"container.id"}, p.Docker.MatchFields, doc)
				}
				if p.Kubernetes == nil {
					continue
				}
				kubes++
				indexers := add_kubernetes_metadata.NewIndexers(p.Kubernetes.Indexers, nil)
				matchers := add_kubernetes_metadata.NewMatchers(p.Kubernetes.Matchers, logp.NewNopLogger())
				require.False(t, indexers.Empty(), "%s: indexers", doc)
				require.False(t, matchers.Empty(), "%s: matchers", doc)
				for _, format := range Formats() {
					owner := *proc
					owner.Container = c
					ev := NewBuilder(format, host).Build(report(model.Connection, model.Outbound, "10.0.0.1", 40000, "10.0.0.9", 443, &owner), ts)
					index := matchers.MetadataIndex(ev.Fields)
					assert.Equal(t, cid, index, "%s, %s", doc, format)
					assert.Contains(t, indexers.GetIndexes(pod), index, "%s, %s", doc, format)
				}
			}
		}
	}
	assert.GreaterOrEqual(t, kubes, 2, "README and docs each give add_kubernetes_metadata")
	assert.GreaterOrEqual(t, dockers, 2, "README and docs each give add_docker_metadata")
}
