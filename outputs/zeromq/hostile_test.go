package zeromq

import (
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// subscribeFrame is a subscription message for prefix.
func subscribeFrame(prefix []byte) []byte {
	return append(appendFrameHeader(nil, len(prefix)+1, false), append([]byte{1}, prefix...)...)
}

// subscriberHandshake is what a SUB socket sends: greeting and READY.
func subscriberHandshake() []byte {
	return append(greeting(), commandFrame(ready("Socket-Type", "SUB"))...)
}

// heapInUse is the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestHostileSubscriber: one peer sends 10,000 subscriptions of 64 KiB
// (640 MiB if they were kept). The output cuts it off at
// maxSubscriptionBytes, having read little of it, and holds nothing of it
// afterwards.
func TestHostileSubscriber(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, _ := newTestClient(t, yamlFor("tcp://127.0.0.1:0"))
	before := heapInUse()
	conn, err := net.Dial("tcp", c.socket().ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write(subscriberHandshake())
	require.NoError(t, err)
	waitPeers(t, c, 1)

	prefix := make([]byte, maxPeerFrame-1)
	sent := 0
	require.NoError(t, conn.SetWriteDeadline(time.Now().Add(30*time.Second)))
	for i := 0; i < 10000; i++ {
		prefix[0], prefix[1] = byte(i), byte(i>>8) // distinct prefixes
		if _, err := conn.Write(subscribeFrame(prefix)); err != nil {
			break // the output closed the connection
		}
		sent++
	}
	waitPeers(t, c, 0)
	// What a closed connection lets through before the writes fail: the
	// socket buffers, a few MiB at most.
	assert.Less(t, sent, 200, "the output stopped reading at its limit")
	grown := int64(heapInUse()) - int64(before)
	t.Logf("sent %d subscriptions of 64 KiB; heap grew %d KiB", sent, grown>>10)
	assert.Less(t, grown, int64(8<<20), "nothing of the subscriptions is held")
	require.NoError(t, c.Close())
}

// TestHostilePeers: 1,000 peers connect at once and each subscribes to
// just under maxSubscriptionBytes; random bytes come from others. The
// output serves max_peers of them at a time, its goroutines and heap stay
// bounded by that, it still delivers to a well-behaved subscriber, and it
// leaves no goroutine behind once closed.
func TestHostilePeers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const peers, maxPeers = 1000, 100
	c, _ := newTestClient(t, yamlFor("tcp://127.0.0.1:0", "max_peers: 100", "send_timeout: 5s"))
	addr := c.socket().ln.Addr().String()
	goroutines, heap := runtime.NumGoroutine(), heapInUse()

	// Distinct 8 KiB prefixes, just under maxSubscriptionBytes in all.
	var subs []byte
	nsubs := maxSubscriptionBytes/(8<<10) - 1
	for i := 0; i < nsubs; i++ {
		prefix := make([]byte, 8<<10)
		prefix[0] = byte(i)
		subs = append(subs, subscribeFrame(prefix)...)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var conns []net.Conn
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	for i := 0; i < peers; i++ {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		conns = append(conns, conn)
		_ = conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		if i%10 == 9 {
			junk := make([]byte, rng.IntN(4096))
			for j := range junk {
				junk[j] = byte(rng.Uint32())
			}
			_, _ = conn.Write(append(greeting()[:rng.IntN(greetingLen)], junk...))
			continue
		}
		// Refused connections are closed by the output; a write to one
		// may fail.
		_, _ = conn.Write(append(subscriberHandshake(), subs...))
	}
	waitFor(t, "max_peers subscribers", func() bool { return len(c.socket().live()) == maxPeers })
	// Each live peer runs a reader and a writer.
	assert.LessOrEqual(t, runtime.NumGoroutine()-goroutines, 2*maxPeers+10, "goroutines bounded by max_peers")
	waitFor(t, "subscriptions read", func() bool {
		for _, p := range c.socket().live() {
			p.mu.Lock()
			n := len(p.subs.count)
			p.mu.Unlock()
			if n < nsubs {
				return false
			}
		}
		return true
	})
	grown := int64(heapInUse()) - int64(heap)
	t.Logf("%d peers served of %d; heap grew %d MiB", len(c.socket().live()), peers, grown>>20)
	assert.Less(t, grown, int64(maxPeers*(maxSubscriptionBytes+maxPeerFrame)*2), "heap bounded by max_peers")

	for _, conn := range conns {
		conn.Close()
	}
	conns = nil
	waitPeers(t, c, 0)
	require.NoError(t, c.Close())
}

// TestSubscriptionMatch compares the length-indexed match with a scan of
// every prefix, over random subscribe and unsubscribe sequences.
func TestSubscriptionMatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := "ab."
	word := func(max int) string {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for round := 0; round < 200; round++ {
		s := newSubscriptions()
		naive := map[string]int{}
		for i := 0; i < 30; i++ {
			p := word(5)
			if rng.IntN(3) == 0 {
				s.remove(p)
				if naive[p]--; naive[p] <= 0 {
					delete(naive, p)
				}
				continue
			}
			require.NoError(t, s.add(p))
			naive[p]++
		}
		for i := 0; i < 50; i++ {
			topic := word(8)
			want := false
			for p := range naive {
				want = want || len(p) <= len(topic) && topic[:len(p)] == p
			}
			require.Equal(t, want, s.match(topic), "topic %q, subscriptions %v", topic, naive)
		}
	}
}

// TestConnectCloseCycles: libbeat reconnects an output with Close and
// Connect; whatever peers were connected, mid-handshake or gone, a closed
// output leaves no goroutine behind.
func TestConnectCloseCycles(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, mode := range []string{"pub", "push"} {
		c, _ := newTestClient(t, yamlFor("tcp://127.0.0.1:0", "mode: "+mode, "send_timeout: 2s"))
		for cycle := 0; cycle < 5; cycle++ {
			addr := c.socket().ln.Addr().String()
			var conns []net.Conn
			for i := 0; i < 5; i++ {
				conn, err := net.Dial("tcp", addr)
				require.NoError(t, err)
				conns = append(conns, conn)
				switch i {
				case 0, 1: // a complete subscriber (or a PULL peer of the wrong type)
					_, _ = conn.Write(subscriberHandshake())
				case 2: // half a greeting: the handshake is in progress at Close
					_, _ = conn.Write(greeting()[:20])
				}
			}
			require.NoError(t, c.Close())
			for _, conn := range conns {
				conn.Close()
			}
			require.NoError(t, c.Connect(t.Context()))
		}
		require.NoError(t, c.Close())
	}
}
