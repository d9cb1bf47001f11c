// Package zeromq is connbeat's `zeromq` output: it sends every event as a
// two-frame ZeroMQ message (topic, JSON event) from a PUB socket, where
// subscribers filter by topic prefix and what nobody receives is dropped
// and counted, or from a PUSH socket that holds events while no consumer
// is connected. ZMTP comes from go-zeromq/zmq4 (pure Go); the socket
// patterns (per-subscriber queues, round robin) are implemented here so
// that every dropped event is counted.
package zeromq

import (
	"errors"
	"fmt"
	"time"

	"github.com/elastic/beats/v7/libbeat/common/fmtstr"
	"github.com/elastic/beats/v7/libbeat/outputs/codec"
	"github.com/elastic/elastic-agent-libs/config"

	"github.com/connbeat/connbeat/internal/confkeys"
)

// Socket modes.
const (
	ModePub  = "pub"
	ModePush = "push"
)

// DefaultTopic gives `connection.v1.web-1` or `listener.v1.web-1`: a
// subscriber picks a kind with the prefix `connection.` and one host with
// `connection.v1.web-1`.
const DefaultTopic = "%{[connbeat.kind]}.v1.%{[host.name]}"

type zmqConfig struct {
	// Endpoint is tcp://host:port or ipc:///path.
	Endpoint string `config:"endpoint"`
	// Bind true: listen on Endpoint; false: connect to it.
	Bind  bool                      `config:"bind"`
	Mode  string                    `config:"mode"`
	Topic *fmtstr.EventFormatString `config:"topic"`
	// SendHWM bounds the messages queued for one peer and not yet written
	// to its connection.
	SendHWM int `config:"send_hwm"`
	// SendTimeout bounds one write to a peer, a handshake, and in push mode
	// the wait for a peer.
	SendTimeout time.Duration `config:"send_timeout"`
	// MaxPeers bounds the connections a bound socket serves at once
	// (handshakes included); further ones are closed when accepted.
	MaxPeers int              `config:"max_peers"`
	Codec    codec.Config     `config:"codec"`
	Queue    config.Namespace `config:"queue"`
}

// maxMaxPeers caps max_peers: each peer may hold maxSubscriptionBytes of
// subscriptions and a frame of maxPeerFrame bytes being read.
const maxMaxPeers = 10000

func defaultConfig() zmqConfig {
	return zmqConfig{
		Bind:        true,
		Mode:        ModePub,
		Topic:       fmtstr.MustCompileEvent(DefaultTopic),
		SendHWM:     1000,
		SendTimeout: 5 * time.Second,
		MaxPeers:    100,
	}
}

// Validate checks every value; errors name the key under output.zeromq.
// It is called by Unpack.
func (c *zmqConfig) Validate() error {
	var errs []error
	if c.Endpoint == "" {
		errs = append(errs, errors.New("output.zeromq.endpoint is required (tcp://host:port or ipc:///path)"))
	} else if _, err := parseEndpoint(c.Endpoint, c.Bind); err != nil {
		errs = append(errs, fmt.Errorf("output.zeromq.endpoint: %w", err))
	}
	if c.Mode != ModePub && c.Mode != ModePush {
		errs = append(errs, fmt.Errorf("output.zeromq.mode must be %s or %s, got %q", ModePub, ModePush, c.Mode))
	}
	if c.Topic == nil || c.Topic.IsEmpty() {
		errs = append(errs, errors.New("output.zeromq.topic must not be empty"))
	}
	if c.SendHWM <= 0 {
		errs = append(errs, fmt.Errorf("output.zeromq.send_hwm must be positive, got %d", c.SendHWM))
	}
	if c.MaxPeers < 1 || c.MaxPeers > maxMaxPeers {
		errs = append(errs, fmt.Errorf("output.zeromq.max_peers must be 1..%d, got %d", maxMaxPeers, c.MaxPeers))
	}
	if c.SendTimeout <= 0 {
		errs = append(errs, fmt.Errorf("output.zeromq.send_timeout must be positive, got %s", c.SendTimeout))
	}
	return errors.Join(errs...)
}

// loadConfig unpacks and validates the output's section, reporting
// unknown keys and bad values at once.
func loadConfig(cfg *config.C) (zmqConfig, error) {
	c := defaultConfig()
	err := confkeys.Unpack(cfg, "output.zeromq", &c, "enabled")
	return c, err
}
