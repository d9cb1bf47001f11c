// Package amqp is connbeat's `amqp` output: it publishes each event as
// one persistent JSON message to an exchange of an AMQP 0-9-1 broker
// (RabbitMQ), with a routing key formatted from the event, and ACKs a
// batch to libbeat only once the broker confirmed every message of it
// (publisher confirms). Unconfirmed events are sent again after a
// reconnect with backoff: delivery is at least once. Messages are
// published with mandatory set, so one no queue is bound for is returned
// and counted (dropped or retried), never counted as delivered.
package amqp

import (
	"context"
	"fmt"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/beats/v7/libbeat/outputs"
	"github.com/elastic/beats/v7/libbeat/outputs/codec"

	// The codecs output.amqp.codec may name.
	_ "github.com/elastic/beats/v7/libbeat/outputs/codec/format"
	_ "github.com/elastic/beats/v7/libbeat/outputs/codec/json"
	"github.com/elastic/beats/v7/libbeat/outputs/outil"
	"github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/paths"
	"github.com/elastic/elastic-agent-libs/testing"
	"github.com/elastic/elastic-agent-libs/transport/tlscommon"

	"github.com/connbeat/connbeat/internal/confkeys"
)

func init() {
	outputs.RegisterType("amqp", makeAMQP)
}

func makeAMQP(_ outputs.IndexManager, info beat.Info, observer outputs.Observer, cfg *config.C, beatPaths *paths.Path) (outputs.Group, error) {
	log := info.Logger.Named("amqp")
	cl, c, err := newClient(info, observer, cfg, log)
	if err != nil {
		return outputs.Fail(err)
	}
	nc := outputs.WithBackoff(cl, c.Backoff.Init, c.Backoff.Max)
	return outputs.SuccessNet(c.Queue, false, c.BulkMaxSize, c.MaxRetries, nil, info.Logger, beatPaths, []outputs.NetworkClient{nc})
}

// newClient unpacks and validates the settings and builds the one client
// that rotates over hosts.
func newClient(info beat.Info, observer outputs.Observer, cfg *config.C, log *logp.Logger) (*client, *amqpConfig, error) {
	c := defaultConfig()
	// routing_keys is read by libbeat's selector, not unpacked.
	if err := confkeys.Unpack(cfg, "output.amqp", &c, "enabled", "routing_keys"); err != nil {
		return nil, nil, err
	}
	if !cfg.HasField("routing_key") && !cfg.HasField("routing_keys") {
		if err := cfg.SetString("routing_key", -1, DefaultRoutingKey); err != nil {
			return nil, nil, fmt.Errorf("output.amqp.routing_key: %w", err)
		}
	}
	key, err := outil.BuildSelectorFromConfig(cfg, outil.Settings{
		Key:              "routing_key",
		MultiKey:         "routing_keys",
		EnableSingleOnly: true,
		FailEmpty:        true,
		Case:             outil.SelectorKeepCase,
	}, log)
	if err != nil {
		return nil, nil, fmt.Errorf("output.amqp.routing_key: %w", err)
	}
	enc, err := codec.CreateEncoder(info, c.Codec)
	if err != nil {
		return nil, nil, fmt.Errorf("output.amqp.codec: %w", err)
	}
	tlsCfg, err := tlscommon.LoadTLSConfig(c.TLS, log)
	if err != nil {
		return nil, nil, fmt.Errorf("output.amqp.ssl: %w", err)
	}
	d := &dialer{cfg: &c, tls: tlsCfg, log: log}
	return &client{
		log:      log,
		cfg:      &c,
		dialer:   d,
		observer: observer,
		codec:    enc,
		key:      key,
		index:    info.Beat,
	}, &c, nil
}

// Test implements `connbeat test output`: each host must accept a
// connection, open a channel in confirm mode and have the exchange (it is
// declared when exchange_declare is true, checked otherwise).
func (c *client) Test(d testing.Driver) {
	for _, h := range c.cfg.Hosts {
		u, err := parseHost(h)
		name := h
		if err == nil {
			name = u.Redacted()
		}
		d.Run("amqp: "+name, func(d testing.Driver) {
			s, err := c.dialer.dial(context.Background(), h)
			d.Fatal("connect, open a channel and check the exchange", err)
			if err != nil {
				return
			}
			defer s.close()
			d.Info("server", fmt.Sprintf("%v %v", s.conn.Properties["product"], s.conn.Properties["version"]))
			if s.tlsState.HandshakeComplete {
				d.Info("TLS", "yes, server certificate verified as configured")
			}
			how := "exists"
			if c.cfg.ExchangeDeclare {
				how = "declared"
			}
			d.Info("exchange", fmt.Sprintf("%q (%s) %s", c.cfg.Exchange, c.cfg.ExchangeType, how))
		})
	}
}
