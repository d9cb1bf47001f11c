package zeromq

import (
	"fmt"
	"net"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/beats/v7/libbeat/outputs"
	"github.com/elastic/beats/v7/libbeat/outputs/codec"
	"github.com/elastic/beats/v7/libbeat/outputs/codec/json"
	"github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/paths"
	"github.com/elastic/elastic-agent-libs/testing"
	"github.com/go-zeromq/zmq4"
)

func init() {
	outputs.RegisterType("zeromq", makeZeroMQ)
}

const (
	// batchSize is how many events libbeat hands to one Publish.
	batchSize = 1024
	// maxRetries -1: in push mode libbeat keeps the events no consumer
	// took until one does (pub mode never retries).
	maxRetries = -1
	// Backoff between failed binds.
	backoffInit = time.Second
	backoffMax  = time.Minute
)

func makeZeroMQ(_ outputs.IndexManager, info beat.Info, observer outputs.Observer, cfg *config.C, beatPaths *paths.Path) (outputs.Group, error) {
	c, err := loadConfig(cfg)
	if err != nil {
		return outputs.Fail(err)
	}
	enc, err := newCodec(info, c.Codec)
	if err != nil {
		return outputs.Fail(err)
	}
	cl, err := newClient(&c, observer, enc, info.Beat, info.Logger.Named("zeromq"))
	if err != nil {
		return outputs.Fail(err)
	}
	clients := []outputs.NetworkClient{outputs.WithBackoff(cl, backoffInit, backoffMax)}
	return outputs.SuccessNet(c.Queue, false, batchSize, maxRetries, nil, info.Logger, beatPaths, clients)
}

// newCodec is libbeat's codec from `codec.*`, JSON without HTML escaping
// when none is set.
func newCodec(info beat.Info, cfg codec.Config) (codec.Codec, error) {
	if !cfg.Namespace.IsSet() {
		return json.New(info.Version, json.Config{EscapeHTML: false}), nil
	}
	enc, err := codec.CreateEncoder(info, cfg)
	if err != nil {
		return nil, fmt.Errorf("output.zeromq.codec: %w", err)
	}
	return enc, nil
}

// Test implements `connbeat test output`: with bind, the endpoint must be
// free to bind; otherwise a peer must accept a connection and complete
// the ZMTP handshake as a socket type that fits (SUB or XSUB for pub,
// PULL for push).
func (c *client) Test(d testing.Driver) {
	d.Run("zeromq: "+c.String(), func(d testing.Driver) {
		if c.cfg.Bind {
			ln, err := listen(c.ep)
			d.Fatal("bind", err)
			if err == nil {
				d.Info("bound", ln.Addr().String())
				ln.Close()
			}
			return
		}
		conn, err := net.DialTimeout(c.ep.network, c.ep.address, c.cfg.SendTimeout)
		d.Fatal("connect", err)
		if err != nil {
			return
		}
		defer conn.Close()
		peerType, err := testHandshake(conn, c.socketType(), c.cfg.SendTimeout)
		d.Fatal("ZMTP handshake", err)
		if err == nil {
			d.Info("peer socket type", peerType)
		}
	})
}

// testHandshake runs the ZMTP handshake on conn and returns the peer's
// socket type.
func testHandshake(conn net.Conn, typ zmq4.SocketType, timeout time.Duration) (string, error) {
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	zc, err := openZMTP(conn, typ, false)
	if err != nil {
		return "", err
	}
	return zc.Peer.Meta["Socket-Type"], nil
}
