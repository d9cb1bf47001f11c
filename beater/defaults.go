package beater

import (
	"github.com/elastic/beats/v7/libbeat/cfgfile"
	conf "github.com/elastic/elastic-agent-libs/config"
)

// OutputDefaults are connbeat's defaults for settings of libbeat's outputs
// and queue, for instance.Settings.ConfigOverrides. libbeat merges them under the
// user's file, so every key the file sets wins.
//
// Kafka: while no broker answers, sarama's partition producer fails each
// message whose leader lookup fails, and after three failed lookups in a
// row its circuit breaker rejects every message for 10 s. libbeat's Kafka
// output retries messages that failed with a real error but acknowledges a
// batch whose only failures are "circuit breaker is open"
// (elastic/beats#35755): those events are lost, seconds into an outage.
// With metadata.retry.max 3600 and backoff 1s a leader lookup keeps
// retrying for an hour before it fails, so the breaker cannot open during
// an outage shorter than three hours: messages wait inside sarama, libbeat's
// queue fills, and queue_full decides what happens to new events. The
// broker is found again within a second of coming back.
func OutputDefaults() []cfgfile.ConditionalOverride {
	return []cfgfile.ConditionalOverride{{
		// Only when the file configures the Kafka output: a second output
		// section, even with these keys only, would make libbeat refuse
		// the config ("more than one namespace configured").
		Check: func(c *conf.C) bool {
			out, err := c.Child("output", -1)
			return err == nil && out.HasField("kafka")
		},
		Config: conf.MustNewConfigFrom(map[string]interface{}{
			"output.kafka.metadata.retry.max":     3600,
			"output.kafka.metadata.retry.backoff": "1s",
		}),
	}, {
		// libbeat's memory queue holds events back until flush.timeout
		// (10 s) passes or flush.min_events (1,600) gather: a newcomer's
		// console stays silent for 10 s, and under churn up to 1,600
		// events (flow events are a few kB each) wait in memory for a
		// batch to fill. connbeat publishes a poll's events at once and
		// its flows as the capture reads them, so an output that keeps up
		// needs no holding back: with a zero timeout it takes what is
		// there, and one that lags still gets big batches, of what
		// gathered meanwhile. Only when the file configures no other
		// queue type (a second one would be refused).
		Check: func(c *conf.C) bool {
			q, err := c.Child("queue", -1)
			return err != nil || q.HasField("mem")
		},
		Config: conf.MustNewConfigFrom(map[string]interface{}{
			"queue.mem.flush.timeout": "0s",
		}),
	}}
}
