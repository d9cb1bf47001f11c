package tests

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }

// TestTestOutputEachKind runs `connbeat test output` against a live server
// of each kind the tests start, and against a port nothing listens on.
// libbeat's Redis output implements no test: it says so, live or dead, and
// the README tells operators to use redis-cli PING instead.
func TestTestOutputEachKind(t *testing.T) {
	t.Parallel()
	kafka := startKafka(t, 0).ListenAddrs()[0]
	es := startES(t, func(Event, int) int { return http.StatusOK })
	ls := startLumber(t)
	for _, tc := range []struct {
		name, output string
		live         bool
		wantCode     int
		want         []string
	}{
		{"kafka live", kafkaOutput(kafka), true, 0, []string{"Kafka: " + kafka, "dial up... OK"}},
		{"kafka dead", kafkaOutput("DEAD"), false, 1, []string{"dial up... ERROR", "connection refused"}},
		{"elasticsearch live", fmt.Sprintf("output.elasticsearch.hosts: [%q]", es.url), true, 0, []string{"dial up... OK", "talk to server... OK"}},
		{"elasticsearch dead", `output.elasticsearch.hosts: ["http://DEAD"]`, false, 1, []string{"dial up... ERROR", "connection refused"}},
		{"logstash live", fmt.Sprintf("output.logstash.hosts: [%q]", ls.addr), true, 0, []string{"logstash: " + ls.addr, "dial up... OK"}},
		{"logstash dead", `output.logstash.hosts: ["DEAD"]`, false, 1, []string{"dial up... ERROR", "connection refused"}},
		{"redis live", "REDIS", true, 1, []string{"redis output doesn't support testing"}},
		{"redis dead", `output.redis.hosts: ["DEAD"]`, false, 1, []string{"redis output doesn't support testing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			output := tc.output
			if output == "REDIS" {
				output = fmt.Sprintf("output.redis.hosts: [%q]", startRedis(t))
			}
			output = strings.ReplaceAll(output, "DEAD", deadAddr(t))
			dir := writeConfig(t, AgentOptions{Extra: "output.console.enabled: false\n" + output + "\n"})
			out, errOut, code := connbeat(t, "", "test", "output", "-c", filepath.Join(dir, "connbeat.yml"), "--strict.perms=false")
			assert.Equal(t, tc.wantCode, code, "%s%s", out, errOut)
			for _, w := range tc.want {
				assert.Contains(t, out+errOut, w)
			}
			if tc.live && tc.wantCode == 0 {
				assert.NotContains(t, out, "ERROR")
			}
		})
	}
}
