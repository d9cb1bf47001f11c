package zeromq

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/logp"
	cbtesting "github.com/elastic/elastic-agent-libs/testing"
	"github.com/go-zeromq/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"no endpoint", "{}", "output.zeromq.endpoint is required"},
		{"udp", "endpoint: 'udp://127.0.0.1:5556'", `output.zeromq.endpoint: "udp://127.0.0.1:5556": transport "udp" is not supported`},
		{"no scheme", "endpoint: '127.0.0.1:5556'", "output.zeromq.endpoint: \"127.0.0.1:5556\" is not tcp://host:port or ipc://path"},
		{"no port", "endpoint: 'tcp://127.0.0.1'", "output.zeromq.endpoint: \"tcp://127.0.0.1\" is not tcp://host:port"},
		{"port range", "endpoint: 'tcp://127.0.0.1:70000'", "port \"70000\" is not a number from 0 to 65535"},
		{"star connect", "endpoint: 'tcp://*:5556'\nbind: false", "host * is only valid with bind: true"},
		{"port 0 connect", "endpoint: 'tcp://127.0.0.1:0'\nbind: false", "port 0 is only valid with bind: true"},
		{"bad host", "endpoint: 'tcp://a b:1'", `"a b" is neither an IP address nor a host name`},
		{"empty ipc", "endpoint: 'ipc://'", "has no socket path"},
		{"hwm 0", "endpoint: 'tcp://*:5556'\nsend_hwm: 0", "output.zeromq.send_hwm must be positive, got 0"},
		{"hwm negative", "endpoint: 'tcp://*:5556'\nsend_hwm: -3", "output.zeromq.send_hwm must be positive, got -3"},
		{"timeout 0", "endpoint: 'tcp://*:5556'\nsend_timeout: 0s", "output.zeromq.send_timeout must be positive"},
		{"bad mode", "endpoint: 'tcp://*:5556'\nmode: dealer", `output.zeromq.mode must be pub or push, got "dealer"`},
		{"empty topic", "endpoint: 'tcp://*:5556'\ntopic: ''", "output.zeromq.topic must not be empty"},
		{"bad topic", "endpoint: 'tcp://*:5556'\ntopic: '%{[connbeat.kind'", "topic"},
		{"unknown key", "endpoint: 'tcp://*:5556'\nsend_hmw: 10", "unknown option output.zeromq.send_hmw (known options: bind, codec, enabled, endpoint, max_peers, mode, queue, send_hwm, send_timeout, topic)"},
		{"unknown key and bad value", "endpoint: 'tcp://*:5556'\nhosts: [x]\nmode: req", "unknown option output.zeromq.hosts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := config.NewConfigWithYAML([]byte(tc.yaml), "test")
			require.NoError(t, err)
			_, err = loadConfig(raw)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// Both problems of the last case are reported at once.
	raw, err := config.NewConfigWithYAML([]byte("endpoint: 'tcp://*:5556'\nhosts: [x]\nmode: req"), "test")
	require.NoError(t, err)
	_, err = loadConfig(raw)
	require.ErrorContains(t, err, "output.zeromq.mode must be pub or push")

	raw, err = config.NewConfigWithYAML([]byte("enabled: true\nendpoint: 'tcp://*:5556'\ncodec.json.pretty: false"), "test")
	require.NoError(t, err)
	c, err := loadConfig(raw)
	require.NoError(t, err)
	assert.Equal(t, ModePub, c.Mode)
	assert.True(t, c.Bind)
	assert.Equal(t, 1000, c.SendHWM)
	assert.Equal(t, 5*time.Second, c.SendTimeout)
	enc, err := newCodec(beat.Info{Version: "0.1.0", Logger: logp.NewNopLogger()}, c.Codec)
	require.NoError(t, err)
	assert.NotNil(t, enc)

	ev := event(1, "listener", "web-1")
	topic, err := c.Topic.Run(&ev)
	require.NoError(t, err)
	assert.Equal(t, "listener.v1.web-1", topic)
}

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in            string
		bind          bool
		network, addr string
	}{
		{"tcp://*:5556", true, "tcp", ":5556"},
		{"tcp://127.0.0.1:5556", false, "tcp", "127.0.0.1:5556"},
		{"tcp://[::1]:5556", true, "tcp", "[::1]:5556"},
		{"tcp://[fe80::1%eth0]:5556", false, "tcp", "[fe80::1%eth0]:5556"},
		{"tcp://collector.example.com:5556", false, "tcp", "collector.example.com:5556"},
		{"tcp://127.0.0.1:0", true, "tcp", "127.0.0.1:0"},
		{"ipc:///run/connbeat/events.sock", true, "unix", "/run/connbeat/events.sock"},
		{"ipc://relative.sock", false, "unix", "relative.sock"},
		{"ipc://@connbeat", true, "unix", "@connbeat"},
	} {
		ep, err := parseEndpoint(tc.in, tc.bind)
		require.NoError(t, err, tc.in)
		assert.Equal(t, endpoint{network: tc.network, address: tc.addr, raw: tc.in}, ep)
	}
	for _, bad := range []string{"", "tcp://", "tcp://:5556", "tcp://[::1]", "ipc://@", "ipc://" + strings.Repeat("a", 108), "inproc://x", "tcp://h:-1", "tcp://h:1x"} {
		_, err := parseEndpoint(bad, true)
		assert.Error(t, err, bad)
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"tcp://*:5556", "tcp://[::1]:0", "ipc:///tmp/x", "ipc://@a", "tcp://a.b-c:65535", "udp://x:1", "tcp://%:1"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, bind bool) {
		ep, err := parseEndpoint(s, bind)
		if err != nil {
			return
		}
		assert.Equal(t, s, ep.String())
		switch ep.network {
		case "tcp":
			host, port, err := net.SplitHostPort(ep.address)
			require.NoError(t, err, "address %q", ep.address)
			if !bind {
				assert.NotEmpty(t, host)
				assert.NotEqual(t, "0", port)
			}
		case "unix":
			assert.NotEmpty(t, ep.address)
			assert.LessOrEqual(t, len(ep.address), maxIPCPath)
		default:
			t.Fatalf("network %q", ep.network)
		}
	})
}

// testOutput runs the output's `test output` check and returns what it
// printed and whether it failed.
func testOutput(t *testing.T, yaml string) (string, bool) {
	t.Helper()
	raw, err := config.NewConfigWithYAML([]byte(yaml), "test")
	require.NoError(t, err)
	c, err := loadConfig(raw)
	require.NoError(t, err)
	cl, err := newClient(&c, nil, nil, "connbeat", logp.NewNopLogger())
	require.NoError(t, err)
	var out bytes.Buffer
	failed := false
	cl.Test(cbtesting.NewConsoleDriverWithKiller(&out, func() { failed = true }))
	return out.String(), failed
}

// TestTestOutput: `connbeat test output` binds (and fails on a taken
// address), or connects and completes the ZMTP handshake with a peer of
// a fitting type.
func TestTestOutput(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	sub := zmq4.NewSub(t.Context())
	defer sub.Close()
	require.NoError(t, sub.Listen("tcp://127.0.0.1:0"))
	pull := zmq4.NewPull(t.Context())
	defer pull.Close()
	require.NoError(t, pull.Listen("tcp://127.0.0.1:0"))
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead.Close()

	for _, tc := range []struct {
		name, yaml string
		fail       bool
		want       string
	}{
		{"bind free", "endpoint: 'tcp://127.0.0.1:0'", false, "bind... OK"},
		{"bind taken", "endpoint: 'tcp://" + taken.Addr().String() + "'", true, "address already in use"},
		{"bind ipc", "endpoint: 'ipc://" + filepath.Join(t.TempDir(), "s") + "'", false, "bind... OK"},
		{"connect sub", "endpoint: 'tcp://" + sub.Addr().String() + "'\nbind: false", false, "peer socket type: SUB"},
		{"connect pull in push mode", "endpoint: 'tcp://" + pull.Addr().String() + "'\nbind: false\nmode: push", false, "peer socket type: PULL"},
		{"connect pull in pub mode", "endpoint: 'tcp://" + pull.Addr().String() + "'\nbind: false", true, "ZMTP handshake... ERROR"},
		{"connect dead", "endpoint: 'tcp://" + dead.Addr().String() + "'\nbind: false", true, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, failed := testOutput(t, tc.yaml)
			assert.Equal(t, tc.fail, failed, out)
			assert.Contains(t, out, tc.want)
		})
	}
}

// TestStaleIPCSocket: a socket file left by a process that died is
// replaced; one a live process accepts on, or a regular file, is not.
func TestStaleIPCSocket(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	_, err = os.Stat(stale)
	require.NoError(t, err, "the socket file stays, as after a crash")
	c, _ := newTestClient(t, yamlFor("ipc://"+stale))
	require.NotNil(t, c.socket())

	live := filepath.Join(dir, "live.sock")
	other, err := net.Listen("unix", live)
	require.NoError(t, err)
	defer other.Close()
	_, err = listen(endpoint{network: "unix", address: live, raw: "ipc://" + live})
	require.ErrorContains(t, err, "another process listens on it")

	regular := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(regular, []byte("x"), 0o600))
	_, err = listen(endpoint{network: "unix", address: regular, raw: "ipc://" + regular})
	require.ErrorContains(t, err, "not a socket file")
}
