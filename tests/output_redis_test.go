package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connbeat/connbeat/internal/testkit"
	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/require"
)

// startRedis runs Debian's redis-server on a free loopback port, without
// persistence, and returns its address.
func startRedis(t *testing.T) string {
	t.Helper()
	bin := testkit.RequireTool(t, "redis-server")
	port := freePort(t)
	var out bytes.Buffer
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	eventually(t, nil, 30*time.Second, "redis-server answering PING", func() bool {
		c, err := redis.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		pong, err := redis.String(c.Do("PING"))
		return err == nil && pong == "PONG"
	})
	return addr
}

func redisOutput(addr, datatype string) string {
	return fmt.Sprintf("output.redis:\n  hosts: [%q]\n  key: connbeat\n  datatype: %s\n", addr, datatype)
}

func decodeAll(t *testing.T, raw [][]byte) []Event {
	t.Helper()
	evs := make([]Event, 0, len(raw))
	for _, r := range raw {
		var ev Event
		require.NoError(t, json.Unmarshal(r, &ev), "%s", r)
		evs = append(evs, ev)
	}
	return evs
}

// TestRedisOutput delivers the events of real loopback connections to a
// real redis-server, in list mode (RPUSH, read back with LRANGE by a Redis
// client and by redis-cli) and in channel mode (PUBLISH, received by a
// subscriber), and checks them field by field.
func TestRedisOutput(t *testing.T) {
	t.Parallel()
	s := startScenario(t, "127.0.0.1", "127.0.0.2")

	t.Run("list", func(t *testing.T) {
		t.Parallel()
		addr := startRedis(t)
		a := outputAgent(t, "  poll_interval: 200ms\n  aggregation: 1m", redisOutput(addr, "list"), s.only())
		c, err := redis.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		var evs []Event
		eventually(t, a, 60*time.Second, "scenario events in the Redis list", func() bool {
			raw, err := redis.ByteSlices(c.Do("LRANGE", "connbeat", 0, -1))
			require.NoError(t, err)
			evs = decodeAll(t, raw)
			return s.complete(evs)
		})
		s.check(t, evs)

		cli := testkit.RequireTool(t, "redis-cli")
		_, port, _ := strings.Cut(addr, ":")
		out, err := exec.Command(cli, "-p", port, "--no-raw", "LRANGE", "connbeat", "0", "-1").Output()
		require.NoError(t, err)
		var fromCli [][]byte
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			// --no-raw prints `N) "quoted JSON"`.
			_, quoted, ok := strings.Cut(line, ") ")
			require.True(t, ok, line)
			js, err := strconv.Unquote(quoted)
			require.NoError(t, err, quoted)
			fromCli = append(fromCli, []byte(js))
		}
		cliEvs := decodeAll(t, fromCli)
		require.True(t, s.complete(cliEvs), "redis-cli read %d events without the scenario", len(cliEvs))
		s.check(t, cliEvs)
	})

	t.Run("channel", func(t *testing.T) {
		t.Parallel()
		addr := startRedis(t)
		// PUBLISH reaches only subscribers that are there: subscribe first.
		conn, err := redis.Dial("tcp", addr)
		require.NoError(t, err)
		psc := redis.PubSubConn{Conn: conn}
		require.NoError(t, psc.Subscribe("connbeat"))
		var (
			mu  sync.Mutex
			raw [][]byte
		)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ctx.Err() == nil {
				switch m := psc.ReceiveWithTimeout(time.Second).(type) {
				case redis.Message:
					mu.Lock()
					raw = append(raw, m.Data)
					mu.Unlock()
				case error:
					if !strings.Contains(m.Error(), "timeout") {
						return
					}
				}
			}
		}()
		t.Cleanup(func() { cancel(); conn.Close(); <-done })

		a := outputAgent(t, "  poll_interval: 200ms\n  aggregation: 1m", redisOutput(addr, "channel"), s.only())
		received := func() []Event {
			mu.Lock()
			defer mu.Unlock()
			return decodeAll(t, raw)
		}
		eventually(t, a, 60*time.Second, "scenario events on the Redis channel", func() bool { return s.complete(received()) })
		s.check(t, received())
	})
}
