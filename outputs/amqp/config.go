package amqp

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/elastic/beats/v7/libbeat/outputs/codec"
	"github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/transport/tlscommon"

	"github.com/connbeat/connbeat/internal/backoff"
)

// DefaultRoutingKey routes by event kind (listener|connection) and
// direction (listening|inbound|outbound); both event formats carry them.
const DefaultRoutingKey = "connbeat.%{[connbeat.kind]}.%{[connbeat.direction]}"

type amqpConfig struct {
	// Hosts are amqp:// or amqps:// URLs, tried in order.
	Hosts []string `config:"hosts"`
	// Username and Password, when set, take precedence over a URL's
	// userinfo; VHost over a URL's path.
	Username        string `config:"username"`
	Password        string `config:"password"`
	VHost           string `config:"vhost"`
	Exchange        string `config:"exchange"`
	ExchangeDeclare bool   `config:"exchange_declare"`
	ExchangeType    string `config:"exchange_type"`
	ExchangeDurable bool   `config:"exchange_durable"`
	// RoutingKey is read again by outil as a format string; it is here to
	// be validated.
	RoutingKey string `config:"routing_key"`
	Persistent bool   `config:"persistent"`
	// Unroutable says what becomes of a message the broker returns
	// because no queue is bound for its routing key.
	Unroutable string `config:"unroutable"`

	Codec     codec.Config      `config:"codec"`
	TLS       *tlscommon.Config `config:"ssl"`
	Heartbeat time.Duration     `config:"heartbeat"`
	// Timeout bounds the TCP connect, TLS and AMQP handshakes.
	Timeout        time.Duration    `config:"timeout"`
	ConfirmTimeout time.Duration    `config:"confirm_timeout"`
	Backoff        backoff.Config   `config:"backoff"`
	MaxRetries     int              `config:"max_retries"`
	BulkMaxSize    int              `config:"bulk_max_size"`
	Queue          config.Namespace `config:"queue"`
}

func defaultConfig() amqpConfig {
	return amqpConfig{
		Exchange:        "connbeat",
		ExchangeDeclare: true,
		ExchangeType:    "topic",
		ExchangeDurable: true,
		RoutingKey:      DefaultRoutingKey,
		Persistent:      true,
		Unroutable:      UnroutableDrop,
		Heartbeat:       10 * time.Second,
		Timeout:         30 * time.Second,
		ConfirmTimeout:  30 * time.Second,
		Backoff:         backoff.Default(),
		MaxRetries:      -1,
		BulkMaxSize:     2048,
	}
}

var exchangeTypes = []string{"topic", "direct", "fanout", "headers"}

// What becomes of unroutable messages.
const (
	// UnroutableDrop counts them as dropped (libbeat.output.events.dropped)
	// and warns: nobody asked for them, as with a ZeroMQ topic nobody
	// subscribes to.
	UnroutableDrop = "drop"
	// UnroutableRetry sends them again with backoff until a queue is bound.
	UnroutableRetry = "retry"
)

// Validate checks every value; errors name the key under output.amqp.
// Passwords never appear in its messages.
func (c *amqpConfig) Validate() error {
	var errs []error
	if len(c.Hosts) == 0 {
		errs = append(errs, errors.New("output.amqp.hosts: at least one amqp:// or amqps:// URL is required"))
	}
	for i, h := range c.Hosts {
		if _, err := parseHost(h); err != nil {
			errs = append(errs, fmt.Errorf("output.amqp.hosts.%d: %w", i, err))
		}
	}
	if c.Password != "" && c.Username == "" {
		errs = append(errs, errors.New("output.amqp.password is set but output.amqp.username is empty"))
	}
	if c.ExchangeDeclare && c.Exchange == "" {
		errs = append(errs, errors.New("output.amqp.exchange must be named when exchange_declare is true (the default exchange \"\" cannot be declared)"))
	}
	if strings.HasPrefix(c.Exchange, "amq.") && c.ExchangeDeclare {
		errs = append(errs, fmt.Errorf("output.amqp.exchange %q: names starting with amq. are reserved; set exchange_declare: false to use it", c.Exchange))
	}
	if !slices.Contains(exchangeTypes, c.ExchangeType) {
		errs = append(errs, fmt.Errorf("output.amqp.exchange_type must be one of %s, got %q", strings.Join(exchangeTypes, ", "), c.ExchangeType))
	}
	if c.Unroutable != UnroutableDrop && c.Unroutable != UnroutableRetry {
		errs = append(errs, fmt.Errorf("output.amqp.unroutable must be %s or %s, got %q", UnroutableDrop, UnroutableRetry, c.Unroutable))
	}
	if strings.TrimSpace(c.RoutingKey) == "" {
		errs = append(errs, errors.New("output.amqp.routing_key must not be empty"))
	}
	if len(c.RoutingKey) > 255 {
		errs = append(errs, fmt.Errorf("output.amqp.routing_key is %d bytes; AMQP allows 255", len(c.RoutingKey)))
	}
	if c.Heartbeat < 0 {
		errs = append(errs, fmt.Errorf("output.amqp.heartbeat must not be negative (0 turns heartbeats off), got %s", c.Heartbeat))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("output.amqp.timeout must be positive, got %s", c.Timeout))
	}
	if c.ConfirmTimeout <= 0 {
		errs = append(errs, fmt.Errorf("output.amqp.confirm_timeout must be positive, got %s", c.ConfirmTimeout))
	}
	errs = append(errs, c.Backoff.Check("output.amqp.backoff"))
	if c.MaxRetries < -1 {
		errs = append(errs, fmt.Errorf("output.amqp.max_retries must be -1 (retry forever) or >= 0, got %d", c.MaxRetries))
	}
	if c.BulkMaxSize <= 0 {
		errs = append(errs, fmt.Errorf("output.amqp.bulk_max_size must be positive, got %d", c.BulkMaxSize))
	}
	return errors.Join(errs...)
}

// parseHost checks one hosts entry. Its errors quote the URL without its
// password.
func parseHost(h string) (*url.URL, error) {
	u, err := url.Parse(h)
	if err != nil {
		// url.Error quotes the input, password included.
		return nil, errors.New("not a URL (amqp://[user[:password]@]host[:port][/vhost])")
	}
	switch {
	case u.Scheme != "amqp" && u.Scheme != "amqps":
		return nil, fmt.Errorf("%q must be an amqp:// or amqps:// URL", u.Redacted())
	case u.Hostname() == "":
		return nil, fmt.Errorf("%q has no host", u.Redacted())
	case u.RawQuery != "":
		return nil, fmt.Errorf("%q: query parameters are not supported; use the output.amqp options", u.Redacted())
	}
	return u, nil
}
