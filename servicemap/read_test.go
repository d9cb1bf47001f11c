package servicemap

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMalformedLines: every kind of bad line is skipped and counted by
// reason, and the good lines around them still make the map.
func TestMalformedLines(t *testing.T) {
	good, err := os.ReadFile("testdata/ecs.ndjson")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(good)), "\n")
	bad := []string{
		`not json at all`,
		`{"connbeat": {"direction": "outbound"`, // cut short
		`[1, 2, 3]`,
		`"a string"`,
		`{"message": "a libbeat log line"}`,
		`{"connbeat": {"direction": "sideways"}}`,
		`{"connbeat": {"direction": "outbound"}, "local_ip": "127.0.0.1", "local_port": 70000, "remote_ip": "127.0.0.1", "remote_port": 80}`,
		`{"connbeat": {"direction": "outbound"}, "local_ip": "not-an-ip", "remote_ip": "127.0.0.1", "remote_port": 80}`,
		`{"connbeat": {"direction": "inbound"}, "destination": {"ip": "127.0.0.1", "port": 80}}`,
		"\x00\xff\xfe binary",
		`{"message": "` + strings.Repeat("x", 3000) + `"}`,
	}
	input := strings.Join(lines[:3], "\n") + "\n\n   \n" + strings.Join(bad, "\r\n") + "\n" + strings.Join(lines[3:], "\n") // no final newline

	m := New(Limits{MaxLine: 2048, MaxKeys: 1000})
	require.NoError(t, m.ReadLines(strings.NewReader(input)))
	want := map[string]int{
		"not a JSON object":               5,
		"not a connbeat event":            2,
		"addresses missing or unreadable": 3,
		"longer than 2048 bytes":          1,
	}
	assert.Equal(t, want, m.skipped)
	assert.Equal(t, len(lines), m.Events())
	assert.Equal(t, recorded, withoutReports(t, m.Graph()))
	assert.Equal(t, fmt.Sprintf("read %d events (ecs %[1]d); skipped 11 (addresses missing or unreadable 3, "+
		"longer than 2048 bytes 1, not a JSON object 5, not a connbeat event 2)", len(lines)), m.Summary())

}

// TestLongLineNotHeld: a line far past the limit is skipped as it streams
// by; the reader's buffer never grows to hold it.
func TestLongLineNotHeld(t *testing.T) {
	m := New(Limits{MaxLine: 1024, MaxKeys: 10})
	input := strings.Repeat("x", 10<<20) + "\n" + `{"connbeat":{"direction":"listening"},"local_ip":"127.0.0.1","local_port":80}` + "\n" + strings.Repeat("y", 5000)
	require.NoError(t, m.ReadLines(strings.NewReader(input)))
	assert.Equal(t, 1, m.Events())
	assert.Equal(t, map[string]int{"longer than 1024 bytes": 2}, m.skipped)
}

// TestMaxKeys: past the key limit new conversations are skipped and
// counted; reports of known ones still count.
func TestMaxKeys(t *testing.T) {
	m := New(Limits{MaxLine: 1024, MaxKeys: 3})
	event := func(port int) []byte {
		return fmt.Appendf(nil, `{"host":{"name":"h"},"connbeat":{"direction":"outbound","sockets":1},"local_ip":"127.0.0.1","local_port":1,"remote_ip":"127.0.0.1","remote_port":%d,"local_process":{"name":"p"}}`, port)
	}
	for port := 1; port <= 10; port++ {
		m.Add(event(port))
	}
	m.Add(event(1))
	assert.Equal(t, 4, m.Events())
	assert.Equal(t, map[string]int{"over 3 distinct keys": 7}, m.skipped)
	assert.Len(t, m.Graph().Edges, 1)
}

// FuzzParse: no line makes the reader panic, and what it keeps is clipped.
func FuzzParse(f *testing.F) {
	data, err := os.ReadFile("testdata/classic.ndjson")
	require.NoError(f, err)
	for _, l := range bytes.Split(data, []byte("\n"))[:3] {
		f.Add(l)
	}
	data, err = os.ReadFile("testdata/ecs.ndjson")
	require.NoError(f, err)
	for _, l := range bytes.Split(data, []byte("\n"))[:3] {
		f.Add(l)
	}
	f.Add([]byte(`{"connbeat":{"direction":"inbound"},"source":{"ip":"::1"},"destination":{"ip":"::1","port":1}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := parse(line)
		if err != nil {
			return
		}
		assert.LessOrEqual(t, len(r.process), maxName)
		assert.LessOrEqual(t, len(r.host), maxName)
		m := New(Limits{MaxLine: 4096, MaxKeys: 100})
		m.Add(line)
		var b bytes.Buffer
		require.NoError(t, WriteDOT(&b, m.Graph(), "fuzz"))
	})
}
