package top

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fixtureRows(t *testing.T) (Snapshot, []Row, []Row) {
	var a Aggregator
	s := a.Add(fixture(), "netlink", time.Date(2026, 11, 23, 3, 37, 7, 0, time.UTC))
	v, err := NewView("", "sockets", false)
	require.NoError(t, err)
	edges, listeners := v.Rows(&s)
	return s, edges, listeners
}

func TestWriteTable(t *testing.T) {
	_, edges, listeners := fixtureRows(t)
	var b bytes.Buffer
	require.NoError(t, WriteTable(&b, edges, listeners))
	assert.Equal(t, `PROCESS    NS  DIR     PROTO  LOCAL           REMOTE        SOCK  CONN/S  BYTES/S
nginx[10]  -   listen  tcp    0.0.0.0:80      -             1     -       -
nginx[10]  -   listen  tcp    127.0.0.1:9000  -             1     -       -
curl[20]   -   out     tcp    127.0.0.2       127.0.0.1:80  3     -       -
nginx[10]  -   in      tcp    127.0.0.1:80    127.0.0.2     3     -       -
?          -   in      tcp    127.0.0.1:80    127.0.0.1     1     -       -
`, b.String())
}

func TestWriteJSON(t *testing.T) {
	s, edges, listeners := fixtureRows(t)
	edges[0].BytesPerSec = Rate{PerSec: 1500, Known: true}
	edges[0].NetNS = 4026531840
	var b bytes.Buffer
	require.NoError(t, WriteJSON(&b, &s, edges[:2], listeners[:1]))
	assert.JSONEq(t, `{
	  "time": "2026-11-23T03:37:07Z", "source": "netlink", "sockets": 9,
	  "edges": [
	    {"process": {"pid": 20, "name": "curl"}, "netns": 4026531840, "transport": "tcp", "direction": "outbound",
	     "local": {"ip": "127.0.0.2"}, "remote": {"ip": "127.0.0.1", "port": 80}, "sockets": 3,
	     "connections_per_sec": null, "bytes_per_sec": 1500},
	    {"process": {"pid": 10, "name": "nginx"}, "transport": "tcp", "direction": "inbound",
	     "local": {"ip": "127.0.0.1", "port": 80}, "remote": {"ip": "127.0.0.2"}, "sockets": 3,
	     "connections_per_sec": null, "bytes_per_sec": null}
	  ],
	  "listeners": [
	    {"process": {"pid": 10, "name": "nginx"}, "transport": "tcp", "local": {"ip": "0.0.0.0", "port": 80},
	     "sockets": 1, "clients": 4}
	  ]
	}`, b.String())
	assert.Equal(t, 1, bytes.Count(b.Bytes(), []byte("\n")), "one line a poll")
}
