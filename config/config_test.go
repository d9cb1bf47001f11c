package config

import (
	"testing"
	"time"

	"github.com/connbeat/connbeat/capture"
	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/event"
	conf "github.com/elastic/elastic-agent-libs/config"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func load(t *testing.T, yaml string) (Config, error) {
	t.Helper()
	raw, err := conf.NewConfigWithYAML([]byte(yaml), "test")
	require.NoError(t, err)
	return Load(raw)
}

func TestLoadDefaults(t *testing.T) {
	c, err := Load(nil)
	require.NoError(t, err)
	assert.Equal(t, Default(), c)

	c, err = load(t, "{}")
	require.NoError(t, err)
	assert.Equal(t, Default(), c)
	assert.Equal(t, 2*time.Second, c.PollInterval)
	assert.Equal(t, 30*time.Second, c.Aggregation)
	assert.True(t, c.ExposeCmdline)
	assert.False(t, c.ExposeEnviron, "environments hold secrets: off by default")
}

func TestLoadValues(t *testing.T) {
	c, err := load(t, `
poll_interval: 500ms
aggregation: 1m
event_format: ecs
socket_source: procfs
expose_cmdline: false
expose_environ: true
environ_allowlist: [SERVICE_NAME, _X1]
queue_full: block
shutdown_timeout: 30s
`)
	require.NoError(t, err)
	want := Default()
	want.PollInterval = 500 * time.Millisecond
	want.Aggregation = time.Minute
	want.EventFormat = event.ECS
	want.SocketSource = connections.ProcFS
	want.ExposeCmdline = false
	want.ExposeEnviron = true
	want.EnvironAllowlist = []string{"SERVICE_NAME", "_X1"}
	want.QueueFullPolicy = QueueFullBlock
	want.ShutdownTimeout = 30 * time.Second
	assert.Equal(t, want, c)
}

func TestLoadRejects(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		errs       []string // every one must appear in the error
	}{
		{"unknown key", "poll_intervall: 1s", []string{"unknown option connbeat.poll_intervall", "known options:"}},
		{"two unknown keys", "a: 1\nb: 2", []string{"connbeat.a, connbeat.b"}},
		{"zero interval", "poll_interval: 0s", []string{"connbeat.poll_interval must be at least 100ms, got 0s"}},
		{"negative interval", "poll_interval: -1s", []string{"connbeat.poll_interval must be at least 100ms"}},
		{"interval below the minimum", "poll_interval: 1ms", []string{"connbeat.poll_interval must be at least 100ms, got 1ms"}},
		{"negative shutdown timeout", "shutdown_timeout: -1s", []string{"connbeat.shutdown_timeout must be 0s .. 1m0s, got -1s"}},
		{"long shutdown timeout", "shutdown_timeout: 5m", []string{"connbeat.shutdown_timeout must be 0s .. 1m0s, got 5m0s"}},
		{"tiny cmdline bound", "max_cmdline_bytes: 10", []string{"connbeat.max_cmdline_bytes must be 256 .. 1048576, got 10"}},
		{"zero aggregation", "aggregation: 0s", []string{"connbeat.aggregation must be positive"}},
		{"aggregation below interval", "poll_interval: 10s\naggregation: 5s", []string{"connbeat.aggregation (5s) must not be shorter than connbeat.poll_interval (10s)"}},
		{"bad format", "event_format: xml", []string{`connbeat.event_format must be one of classic, ecs, got "xml"`}},
		{"bad source", "socket_source: ebpf", []string{`connbeat.socket_source must be one of auto, bpf, netlink, procfs, got "ebpf"`}},
		{"bad queue policy", "queue_full: wait", []string{"connbeat.queue_full must be one of drop, block"}},
		{"tcp_info with procfs", "socket_source: procfs\ntcp_info: true", []string{"connbeat.tcp_info needs the netlink socket source; procfs cannot"}},
		{"tcp_info with bpf", "socket_source: bpf\ntcp_info: true", []string{"connbeat.tcp_info needs the netlink socket source; bpf cannot"}},
		{"empty proc path", "proc_path: ''", []string{"connbeat.proc_path must not be empty"}},
		{"allowlist entry not a name", "environ_allowlist: [OK, 'BAD-NAME', '1X']",
			[]string{`connbeat.environ_allowlist.1: "BAD-NAME" is not an environment variable name`, `connbeat.environ_allowlist.2: "1X"`}},
		{"environ without allowlist", "expose_environ: true", []string{"connbeat.environ_allowlist is empty"}},
		{"not a duration", "poll_interval: often", []string{"poll_interval"}},
		{"several errors at once", "poll_interval: 0s\nevent_format: x", []string{"poll_interval must be at least", "event_format must be one of"}},
		{"unknown key and a bad value", "colour: red\nqueue_full: x", []string{"unknown option connbeat.colour", "connbeat.queue_full must be one of"}},
		{"conntrack unknown key", "conntrack: {enabled: true, buffer: 1MiB}", []string{"unknown option connbeat.conntrack.buffer", "known options: enabled, events, queue_size, receive_buffer, set_sysctls, track_flows"}},
		{"conntrack bad event", "conntrack.events: [new, close]", []string{`connbeat.conntrack.events.1 must be one of new, update, destroy, got "close"`}},
		{"conntrack event twice", "conntrack.events: [new, new]", []string{`connbeat.conntrack.events.1: "new" is listed twice`}},
		{"conntrack no events", "conntrack.events: []", []string{"connbeat.conntrack.events must name at least one"}},
		{"conntrack tiny buffer", "conntrack.receive_buffer: 1KiB", []string{"connbeat.conntrack.receive_buffer must be between 4KiB and 1GiB, got 1024 bytes"}},
		{"conntrack not a size", "conntrack.receive_buffer: lots", []string{"receive_buffer"}},
		{"conntrack small queue", "conntrack.queue_size: 64KiB", []string{"connbeat.conntrack.queue_size must be between 1MiB and 4GiB, got 65536 bytes"}},
		{"capture unknown", "capture: ebpf", []string{"connbeat.capture must be one of"}},
		{"udp flow timeout", "udp_flow_timeout: 10ms", []string{"connbeat.udp_flow_timeout must be 1s .. 1h, got 10ms"}},
		{"capture maps unknown key", "capture_maps: {sockets: 10}", []string{"unknown option connbeat.capture_maps.sockets"}},
		{"capture maps too small", "capture_maps: {connections: 10, udp_pairs: 1}",
			[]string{"connbeat.capture_maps: capture map connections: 10 entries, want 1024 .. 16777216", "capture map udp_pairs: 1 entries"}},
		{"capture ring buffer not a power of two", "capture_maps.ring_buffer: 3MiB",
			[]string{"connbeat.capture_maps: capture ring buffer: 3145728 bytes, want a power of two"}},
		{"conntrack no tracking", "conntrack.track_flows: 0", []string{"connbeat.conntrack.track_flows must be between 1 and 16777216, got 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.yaml)
			require.Error(t, err)
			for _, want := range tc.errs {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
}

// TestKeysNameEveryOption: Keys, which unknown-key rejection and the docs
// rely on, names the options of the connbeat section and nothing else.
func TestKeysNameEveryOption(t *testing.T) {
	keys := Keys()
	for _, k := range []string{"poll_interval", "aggregation", "socket_source", "tcp_info", "event_format",
		"proc_path", "expose_process_info", "expose_cmdline", "redact_cmdline", "expose_environ",
		"environ_allowlist", "enable_local_connections", "queue_full", "shutdown_timeout", "max_cmdline_bytes",
		"capture", "flow_events", "udp_flow_timeout", "capture_maps"} {
		assert.True(t, keys[k], k)
	}
	assert.True(t, keys["conntrack"])
	assert.Len(t, keys, 20)
}

func TestLoadCaptureMaps(t *testing.T) {
	c, err := load(t, "{}")
	require.NoError(t, err)
	assert.Equal(t, capture.DefaultSizes, c.CaptureMaps.Sizes())
	c, err = load(t, "capture_maps: {connections: 2048, listeners: 128, udp_pairs: 512, ring_buffer: 64KiB}")
	require.NoError(t, err)
	assert.Equal(t, capture.Sizes{Connections: 2048, Listeners: 128, UDPPairs: 512, RingBuffer: 64 << 10}, c.CaptureMaps.Sizes())
}

func TestLoadConntrack(t *testing.T) {
	c, err := load(t, "{}")
	require.NoError(t, err)
	assert.Equal(t, Conntrack{Events: []string{"new", "destroy"}, ReceiveBuffer: 8 << 20, QueueSize: 64 << 20, TrackFlows: 65536, SetSysctls: true}, c.Conntrack,
		"off by default; NEW and DESTROY, as the conntrack event collector")

	c, err = load(t, `
conntrack:
  enabled: true
  events: [new, update, destroy]
  receive_buffer: 32MiB
  queue_size: 128MiB
  track_flows: 1000
  set_sysctls: false
`)
	require.NoError(t, err)
	assert.Equal(t, Conntrack{Enabled: true, Events: []string{"new", "update", "destroy"}, ReceiveBuffer: 32 << 20, QueueSize: 128 << 20, TrackFlows: 1000}, c.Conntrack)
}
