package servicemap

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestReadKafka reads the recorded events, one a message as the Kafka
// output writes them, from an in-process broker (kfake speaks the real
// protocol) over two partitions, with a malformed message among them.
func TestReadKafka(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "connbeat", "empty"))
	require.NoError(t, err)
	defer c.Close()
	brokers := c.ListenAddrs()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("connbeat"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	require.NoError(t, err)
	defer producer.Close()
	var records []*kgo.Record
	for _, f := range []string{"testdata/classic.ndjson", "testdata/ecs.ndjson"} {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			records = append(records, &kgo.Record{Value: line})
		}
	}
	records = append(records, &kgo.Record{Value: []byte("{not an event")})
	require.NoError(t, producer.ProduceSync(ctx, records...).FirstErr())

	m := New(DefaultLimits)
	require.NoError(t, m.ReadKafka(ctx, brokers, "connbeat"))
	assert.Equal(t, len(records)-1, m.Events(), m.Summary())
	assert.Equal(t, map[string]int{"not a JSON object": 1}, m.skipped)
	assert.Equal(t, recorded, withoutReports(t, m.Graph()))

	empty := New(DefaultLimits)
	require.NoError(t, empty.ReadKafka(ctx, brokers, "empty"), "an empty topic is an empty map")
	assert.Zero(t, empty.Events())

	err = New(DefaultLimits).ReadKafka(ctx, brokers, "nosuchtopic")
	require.ErrorContains(t, err, "kafka: topic nosuchtopic: UNKNOWN_TOPIC_OR_PARTITION")
}
