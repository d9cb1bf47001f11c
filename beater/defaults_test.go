package beater

import (
	"testing"

	conf "github.com/elastic/elastic-agent-libs/config"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOutputDefaultsApply checks which files each default is merged under:
// the Kafka retries only with the Kafka output, the short queue flush only
// when no other queue type is configured (libbeat refuses two).
func TestOutputDefaultsApply(t *testing.T) {
	tests := []struct {
		name string
		file map[string]interface{}
		want []string // keys the merged defaults add
	}{
		{"console, no queue", map[string]interface{}{"output.console.enabled": true},
			[]string{"queue.mem.flush.timeout"}},
		{"kafka", map[string]interface{}{"output.kafka.hosts": []string{"k:9092"}},
			[]string{"output.kafka.metadata.retry.max", "queue.mem.flush.timeout"}},
		{"memory queue", map[string]interface{}{"queue.mem.events": 4096},
			[]string{"queue.mem.flush.timeout"}},
		{"disk queue", map[string]interface{}{"queue.disk.max_size": "1GB"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := conf.MustNewConfigFrom(tt.file)
			var got []string
			for _, o := range OutputDefaults() {
				if !o.Check(file) {
					continue
				}
				for _, key := range []string{"output.kafka.metadata.retry.max", "queue.mem.flush.timeout"} {
					if ok, err := o.Config.Has(key, -1); err == nil && ok {
						got = append(got, key)
					}
				}
			}
			require.NotNil(t, file)
			assert.ElementsMatch(t, tt.want, got)
		})
	}
}
