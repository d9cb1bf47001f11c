package zeromq

import (
	"bufio"
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connbeat/connbeat/internal/testkit"
	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/beats/v7/libbeat/outputs/outest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// python is Debian's interpreter, which has python3-zmq (pyzmq on libzmq).
const python = "/usr/bin/python3"

// pySub binds a libzmq SUB socket, subscribes to argv[1], prints its
// endpoint, then prints topic and event id of each message until it has
// argv[2] of them.
const pySub = `
import json, sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.SUB)
s.setsockopt(zmq.RCVTIMEO, 60000)
port = s.bind_to_random_port("tcp://127.0.0.1")
s.setsockopt_string(zmq.SUBSCRIBE, sys.argv[1])
print("ready tcp://127.0.0.1:%d" % port, flush=True)
for _ in range(int(sys.argv[2])):
    topic, body = s.recv_multipart()
    ev = json.loads(body)
    print(topic.decode(), ev["id"], ev["connbeat"]["kind"], ev["@timestamp"], flush=True)
`

func needPyZMQ(t *testing.T) {
	t.Helper()
	testkit.RequireTool(t, python)
	if out, err := exec.Command(python, "-c", "import zmq").CombinedOutput(); err != nil {
		testkit.Missing(t, "python3 has no zmq module (Debian package python3-zmq): %v: %s", err, out)
	}
}

// TestLibzmqSubscriber: a libzmq SUB socket (pyzmq) that binds receives
// and decodes the events of its topic prefix from the output connecting
// to it (bind: false).
func TestLibzmqSubscriber(t *testing.T) {
	needPyZMQ(t)
	var evs []beat.Event
	want := []string{}
	for i := 0; i < 40; i++ {
		kind := "listener"
		if i%2 == 0 {
			kind = "connection"
			want = append(want, "connection.v1.web-1 "+itoa(i)+" connection 2023-11-14T22:13:20.000Z")
		}
		evs = append(evs, event(i, kind, "web-1"))
	}

	cmd := exec.Command(python, "-c", pySub, "connection.", itoa(len(want)))
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "python exited: %s", stderr.String())
			return l
		case <-time.After(60 * time.Second):
			t.Fatalf("no line from python: %s", stderr.String())
			return ""
		}
	}
	ep, ok := strings.CutPrefix(next(), "ready ")
	require.True(t, ok)

	c, m := newTestClient(t, yamlFor(ep, "bind: false"))
	waitSubscribed(t, c, "connection.", 1)
	assert.Equal(t, outest.BatchACK, publish(t, c, evs...)[0].Tag)
	var got []string
	for range want {
		got = append(got, next())
	}
	assert.Equal(t, want, got)
	assert.Equal(t, int64(len(want)), m.get("events.acked"))
	assert.Equal(t, int64(len(evs)-len(want)), m.get("events.dropped"), "the listener events had no subscriber")
}

// lockedBuffer collects a child's stderr while the test may read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }
