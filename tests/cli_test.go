package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// connbeat runs the binary with args and returns stdout, stderr and the
// exit code.
func connbeat(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bins.connbeat, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader(stdin)
	done := make(chan error, 1)
	require.NoError(t, cmd.Start())
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("connbeat %v did not finish in 60 s", args)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func TestVersion(t *testing.T) {
	v, err := os.ReadFile("../VERSION")
	require.NoError(t, err)
	out, _, code := connbeat(t, "", "version")
	assert.Equal(t, 0, code)
	assert.True(t, strings.HasPrefix(out, "connbeat version "+strings.TrimSpace(string(v))+" "), out)
}

func TestShippedConfigs(t *testing.T) {
	for _, file := range []string{"../connbeat.yml", "../connbeat.reference.yml"} {
		out, errOut, code := connbeat(t, "", "test", "config", "-c", file, "--strict.perms=false",
			"--path.data", t.TempDir(), "--path.logs", t.TempDir())
		assert.Equal(t, 0, code, "%s: %s%s", file, out, errOut)
		assert.Contains(t, out, "Config OK", file)
	}
}

func TestBadConfigRefused(t *testing.T) {
	for _, tc := range []struct{ name, section, want string }{
		{"unknown key", "  poll_intervall: 1s", "unknown option connbeat.poll_intervall"},
		{"zero interval", "  poll_interval: 0s", "connbeat.poll_interval must be at least 100ms"},
		{"aggregation below interval", "  poll_interval: 10s\n  aggregation: 2s", "connbeat.aggregation (2s) must not be shorter than connbeat.poll_interval (10s)"},
		{"allowlist entry", "  expose_environ: true\n  environ_allowlist: [\"A B\"]", `connbeat.environ_allowlist.0: "A B" is not an environment variable name`},
		{"format", "  event_format: json", "connbeat.event_format must be one of classic, ecs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeConfig(t, AgentOptions{Connbeat: tc.section})
			out, errOut, code := connbeat(t, "", "-e", "-c", filepath.Join(dir, "connbeat.yml"), "--strict.perms=false")
			assert.NotEqual(t, 0, code)
			assert.Contains(t, errOut, tc.want)
			assert.Empty(t, out, "nothing published before the config is validated")

			_, errOut, code = connbeat(t, "", "test", "config", "-c", filepath.Join(dir, "connbeat.yml"), "--strict.perms=false")
			assert.NotEqual(t, 0, code)
			assert.Contains(t, errOut, tc.want)
		})
	}
	t.Run("broken yaml", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "connbeat.yml")
		require.NoError(t, os.WriteFile(file, []byte("connbeat:\n  poll_interval: [\noutput.console: {}\n"), 0o644))
		_, errOut, code := connbeat(t, "", "-e", "-c", file, "--strict.perms=false", "--path.data", dir)
		assert.NotEqual(t, 0, code)
		assert.Contains(t, errOut, "error loading config file")
	})
}

func TestExportTemplateHasFields(t *testing.T) {
	dir := writeConfig(t, AgentOptions{})
	out, errOut, code := connbeat(t, "", "export", "template", "-c", filepath.Join(dir, "connbeat.yml"), "--strict.perms=false")
	require.Equal(t, 0, code, errOut)
	var tmpl map[string]interface{}
	require.NoError(t, json.Unmarshal([]byte(out), &tmpl), out[:min(len(out), 500)])
	props := Event(tmpl).Get("template.mappings.properties")
	require.NotNil(t, props, "mappings in the template")
	p := Event(props.(map[string]interface{}))
	for path, typ := range map[string]string{
		"local_ip.type":                                       "ip",
		"local_process.properties.binary.type":                "keyword",
		"local_process.properties.start_time.type":            "date",
		"beat.properties.local_ips.type":                      "ip",
		"connbeat.properties.sockets.type":                    "long",
		"connbeat.properties.tcp_info.properties.rtt_us.type": "long",
		"source.properties.ip.type":                           "ip",
		"process.properties.args.type":                        "keyword",
		"network.properties.community_id.type":                "keyword",
		"network.properties.direction.type":                   "keyword",
		// The conntrack input's, the classic ones through a YAML anchor.
		"Reply.properties.Layer3.properties.Src.type":       "ip",
		"Original.properties.Counter.properties.Bytes.type": "long",
		"UNREPLIED.type": "boolean",
		"destination.properties.nat.properties.ip.type":        "ip",
		"event.properties.duration.type":                       "long",
		"connbeat.properties.conntrack.properties.resync.type": "boolean",
		"process.properties.executable_deleted.type":           "boolean",
		"local_process.properties.exe_deleted.type":            "boolean",
		"connbeat.properties.truncated_fields.type":            "keyword",
	} {
		assert.Equal(t, typ, p.Str(path), path)
	}
}

func TestExportConfig(t *testing.T) {
	out, errOut, code := connbeat(t, "", "export", "config", "-c", "../connbeat.yml", "--strict.perms=false")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "poll_interval: 2s")
	assert.Contains(t, out, "console:")
}

// TestKeystore stores a value in the keystore and uses it in the config.
func TestKeystore(t *testing.T) {
	dir := writeConfig(t, AgentOptions{Connbeat: "  poll_interval: ${CB_INTERVAL}\n  aggregation: 1s"})
	cfg := filepath.Join(dir, "connbeat.yml")
	base := []string{"-c", cfg, "--strict.perms=false"}
	_, errOut, code := connbeat(t, "", append([]string{"keystore", "create"}, base...)...)
	require.Equal(t, 0, code, errOut)
	_, errOut, code = connbeat(t, "250ms", append([]string{"keystore", "add", "CB_INTERVAL", "--stdin"}, base...)...)
	require.Equal(t, 0, code, errOut)
	out, errOut, code := connbeat(t, "", append([]string{"keystore", "list"}, base...)...)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "CB_INTERVAL")
	out, errOut, code = connbeat(t, "", append([]string{"test", "config"}, base...)...)
	assert.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "Config OK")
	out, errOut, code = connbeat(t, "", append([]string{"export", "config"}, base...)...)
	require.Equal(t, 0, code, errOut)
	assert.NotContains(t, out, "250ms", "export config does not resolve secrets")
}

// TestTestOutput runs `connbeat test output` against a live HTTP server
// answering as Elasticsearch does, and against a closed port.
func TestTestOutput(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		fmt.Fprint(w, `{"name":"test","cluster_name":"c","cluster_uuid":"u","version":{"number":"9.5.0","build_flavor":"default"},"tagline":"You Know, for Search"}`)
	}))
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	l.Close()

	run := func(host string) (string, int) {
		dir := writeConfig(t, AgentOptions{Extra: "output.console.enabled: false\noutput.elasticsearch.hosts: [\"" + host + "\"]\n"})
		out, errOut, code := connbeat(t, "", "test", "output", "-c", filepath.Join(dir, "connbeat.yml"), "--strict.perms=false")
		return out + errOut, code
	}
	out, code := run(srv.URL)
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "talk to server... OK")
	assert.Contains(t, out, "version: 9.5.0")

	out, code = run("http://" + dead)
	assert.NotEqual(t, 0, code, out)
	assert.Contains(t, out, "connection refused")
}
