// Package config holds the `connbeat:` section of connbeat.yml: its defaults
// and the validation that runs before anything is published.
package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/elastic/beats/v7/libbeat/common/cfgtype"
	conf "github.com/elastic/elastic-agent-libs/config"

	"github.com/connbeat/connbeat/capture"
	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/event"
	"github.com/connbeat/connbeat/internal/confkeys"
	"github.com/connbeat/connbeat/model"
	"github.com/connbeat/connbeat/procs"
)

// Config is the `connbeat:` section.
type Config struct {
	// PollInterval is how often the sockets are read.
	PollInterval time.Duration `config:"poll_interval"`
	// Aggregation is the dedup window: a key reported within it is not
	// reported again; a socket still open after it is reported again.
	Aggregation time.Duration `config:"aggregation"`
	// SocketSource picks how sockets are read: auto, bpf, netlink or procfs.
	SocketSource string `config:"socket_source"`
	// TCPInfo adds the kernel's tcp_info figures to connection events
	// (netlink source only).
	TCPInfo bool `config:"tcp_info"`
	// EventFormat is classic (the original connbeat shape) or ecs.
	EventFormat string `config:"event_format"`
	// ProcPath is the proc filesystem to read (a host's /proc mounted
	// elsewhere when the agent runs in a container).
	ProcPath string `config:"proc_path"`
	// ExposeProcessInfo joins sockets to processes at all.
	ExposeProcessInfo bool `config:"expose_process_info"`
	// ExposeCmdline ships process command lines.
	ExposeCmdline bool `config:"expose_cmdline"`
	// RedactCmdline masks credential-looking arguments in command lines.
	RedactCmdline bool `config:"redact_cmdline"`
	// MaxCmdlineBytes bounds a command line in an event; the arguments past
	// it are left out and the event says so (connbeat.truncated_fields).
	MaxCmdlineBytes int `config:"max_cmdline_bytes"`
	// ExposeEnviron ships the environment variables in EnvironAllowlist.
	ExposeEnviron bool `config:"expose_environ"`
	// EnvironAllowlist names the variables shipped when ExposeEnviron is on.
	EnvironAllowlist []string `config:"environ_allowlist"`
	// EnableLocalConnections reports connections whose peer is loopback.
	EnableLocalConnections bool `config:"enable_local_connections"`
	// QueueFullPolicy says what the poller does when libbeat's queue is
	// full because the output is down: drop (count and log) or block.
	QueueFullPolicy string `config:"queue_full"`
	// ShutdownTimeout is how long a stop waits for the events already
	// published to be acknowledged by the output before libbeat closes it.
	ShutdownTimeout time.Duration `config:"shutdown_timeout"`
	// Conntrack configures the conntrack input.
	Conntrack Conntrack `config:"conntrack"`
	// Capture chooses how connections are seen: events (eBPF, every
	// connection as it happens), poll (read the socket tables each
	// poll_interval) or auto (events where the kernel allows them).
	Capture string `config:"capture"`
	// FlowEvents adds one event per ended connection (connbeat.kind: flow).
	FlowEvents bool `config:"flow_events"`
	// UDPFlowTimeout is how long a UDP pair stays idle before its flow ends.
	UDPFlowTimeout time.Duration `config:"udp_flow_timeout"`
	// CaptureMaps bounds the event capture's kernel memory.
	CaptureMaps CaptureMaps `config:"capture_maps"`
}

// CaptureMaps is the `connbeat.capture_maps:` section: the sizes of the
// event capture's kernel maps, so that a connection flood cannot take
// more kernel memory than they say (full maps evict, and count it).
type CaptureMaps struct {
	// Connections is how many TCP connections the kernel remembers the
	// process of, between their connect or accept and their close.
	Connections uint32 `config:"connections"`
	// Listeners is how many listening ports the kernel remembers the
	// holder of (the owner of their accepted connections).
	Listeners uint32 `config:"listeners"`
	// UDPPairs is how many (process, local, remote) UDP pairs are counted.
	UDPPairs uint32 `config:"udp_pairs"`
	// RingBuffer is the buffer records cross to user space in; records
	// that find it full are counted in connbeat.capture.lost.
	RingBuffer cfgtype.ByteSize `config:"ring_buffer"`
}

// Sizes returns the capture's map sizes.
func (m CaptureMaps) Sizes() capture.Sizes {
	return capture.Sizes{Connections: m.Connections, Listeners: m.Listeners, UDPPairs: m.UDPPairs, RingBuffer: uint32(min(uint64(m.RingBuffer), 1<<31))}
}

// Capture modes, as connbeat.capture spells them.
const (
	CaptureAuto   = "auto"
	CaptureEvents = "events"
	CapturePoll   = "poll"
)

// Conntrack is the `connbeat.conntrack:` section: the input of the
// kernel's connection tracking events.
type Conntrack struct {
	Enabled bool `config:"enabled"`
	// Events are the event types to subscribe to: new, update, destroy.
	Events []string `config:"events"`
	// ReceiveBuffer is the netlink socket's receive buffer: what absorbs
	// a burst of events while connbeat is busy.
	ReceiveBuffer cfgtype.ByteSize `config:"receive_buffer"`
	// QueueSize bounds the events read from the socket and not yet
	// published: what absorbs a burst while the join or the output is
	// slow, at about a third of the kernel's cost per event.
	QueueSize cfgtype.ByteSize `config:"queue_size"`
	// TrackFlows bounds the open entries remembered, for the process join
	// of their DESTROY and for re-syncs after a loss.
	TrackFlows int `config:"track_flows"`
	// SetSysctls turns on nf_conntrack_acct, nf_conntrack_timestamp and
	// nf_conntrack_events where they are 0 and connbeat may.
	SetSysctls bool `config:"set_sysctls"`
}

// Conntrack event type names.
const (
	ConntrackNew     = "new"
	ConntrackUpdate  = "update"
	ConntrackDestroy = "destroy"
)

// Bounds on the options.
const (
	// MinPollInterval keeps a typo (1ms, a bare number) from turning the
	// agent into a busy loop reading every socket of the host.
	MinPollInterval = 100 * time.Millisecond
	// MinCmdlineBytes and MaxCmdlineBytes bound max_cmdline_bytes.
	MinCmdlineBytes = 256
	MaxCmdlineBytes = 1 << 20
	// MaxShutdownTimeout keeps a stop within systemd's default
	// TimeoutStopSec (90 s) with room for the output's own close.
	MaxShutdownTimeout = time.Minute
	// Bounds of the conntrack options.
	minReceiveBuffer = 4 << 10
	maxReceiveBuffer = 1 << 30
	minQueueSize     = 1 << 20
	maxQueueSize     = 4 << 30
	maxTrackFlows    = 1 << 24
)

// Queue-full policies.
const (
	QueueFullDrop  = "drop"
	QueueFullBlock = "block"
)

// Default returns the configuration used for keys the file leaves out.
func Default() Config {
	return Config{
		PollInterval:           2 * time.Second,
		Aggregation:            30 * time.Second,
		SocketSource:           connections.Auto,
		EventFormat:            event.Classic,
		ProcPath:               "/proc",
		ExposeProcessInfo:      true,
		ExposeCmdline:          true,
		RedactCmdline:          true,
		MaxCmdlineBytes:        8 << 10,
		EnableLocalConnections: true,
		QueueFullPolicy:        QueueFullDrop,
		Conntrack: Conntrack{
			Events:        []string{ConntrackNew, ConntrackDestroy},
			ReceiveBuffer: 8 << 20,
			QueueSize:     64 << 20,
			TrackFlows:    65536,
			SetSysctls:    true,
		},
		ShutdownTimeout: 10 * time.Second,
		Capture:         CaptureAuto,
		UDPFlowTimeout:  30 * time.Second,
		CaptureMaps: CaptureMaps{
			Connections: capture.DefaultSizes.Connections,
			Listeners:   capture.DefaultSizes.Listeners,
			UDPPairs:    capture.DefaultSizes.UDPPairs,
			RingBuffer:  cfgtype.ByteSize(capture.DefaultSizes.RingBuffer),
		},
	}
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Load unpacks and validates the `connbeat:` section. A nil section gives
// the defaults. Errors name the offending key as `connbeat.<key>`.
func Load(section *conf.C) (Config, error) {
	c := Default()
	if section == nil {
		return c, nil
	}
	// Report every problem at once: an operator fixing a typo should not
	// discover the next error only on the next start.
	// Unpack runs Validate.
	err := confkeys.Unpack(section, "connbeat", &c)
	if section.HasField("conntrack") {
		if sub, cerr := section.Child("conntrack", -1); cerr == nil {
			err = errors.Join(err, confkeys.Check(sub, "connbeat.conntrack", confkeys.Of(Conntrack{})))
			// Unpacking an empty list keeps the default one.
			if n, cerr := sub.CountField("events"); sub.HasField("events") && (cerr != nil || n == 0) {
				err = errors.Join(err, errNoEvents)
			}
		}
	}
	if section.HasField("capture_maps") {
		if sub, cerr := section.Child("capture_maps", -1); cerr == nil {
			err = errors.Join(err, confkeys.Check(sub, "connbeat.capture_maps", confkeys.Of(CaptureMaps{})))
		}
	}
	return c, err
}

// ProcessMetadata says which process details the process joins read.
func (c *Config) ProcessMetadata() procs.MetadataOptions {
	return procs.MetadataOptions{
		Cmdline:          c.ExposeCmdline,
		RedactCmdline:    c.RedactCmdline,
		MaxCmdlineBytes:  c.MaxCmdlineBytes,
		Environ:          c.ExposeEnviron,
		EnvironAllowlist: c.EnvironAllowlist,
	}
}

// FlowEvents returns the configured conntrack event types.
func (c *Conntrack) FlowEvents() []model.FlowEvent {
	var out []model.FlowEvent
	for _, e := range c.Events {
		switch e {
		case ConntrackNew:
			out = append(out, model.FlowNew)
		case ConntrackUpdate:
			out = append(out, model.FlowUpdate)
		case ConntrackDestroy:
			out = append(out, model.FlowDestroy)
		}
	}
	return out
}

// Keys returns the option names of the connbeat section.
func Keys() map[string]bool { return confkeys.Of(Config{}) }

// Validate checks values; it is also called by Unpack.
func (c *Config) Validate() error {
	var errs []error
	if c.PollInterval < MinPollInterval {
		errs = append(errs, fmt.Errorf("connbeat.poll_interval must be at least %s, got %s", MinPollInterval, c.PollInterval))
	}
	if c.Aggregation <= 0 {
		errs = append(errs, fmt.Errorf("connbeat.aggregation must be positive, got %s", c.Aggregation))
	} else if c.PollInterval > 0 && c.Aggregation < c.PollInterval {
		errs = append(errs, fmt.Errorf("connbeat.aggregation (%s) must not be shorter than connbeat.poll_interval (%s)", c.Aggregation, c.PollInterval))
	}
	if c.MaxCmdlineBytes < MinCmdlineBytes || c.MaxCmdlineBytes > MaxCmdlineBytes {
		errs = append(errs, fmt.Errorf("connbeat.max_cmdline_bytes must be %d .. %d, got %d", MinCmdlineBytes, MaxCmdlineBytes, c.MaxCmdlineBytes))
	}
	if c.ShutdownTimeout < 0 || c.ShutdownTimeout > MaxShutdownTimeout {
		errs = append(errs, fmt.Errorf("connbeat.shutdown_timeout must be 0s .. %s, got %s", MaxShutdownTimeout, c.ShutdownTimeout))
	}
	errs = append(errs, oneOf("socket_source", c.SocketSource, connections.Names()...))
	errs = append(errs, oneOf("event_format", c.EventFormat, event.Formats()...))
	errs = append(errs, oneOf("queue_full", c.QueueFullPolicy, QueueFullDrop, QueueFullBlock))
	errs = append(errs, oneOf("capture", c.Capture, CaptureAuto, CaptureEvents, CapturePoll))
	if c.UDPFlowTimeout < time.Second || c.UDPFlowTimeout > time.Hour {
		errs = append(errs, fmt.Errorf("connbeat.udp_flow_timeout must be 1s .. 1h, got %s", c.UDPFlowTimeout))
	}
	if c.TCPInfo && slices.Contains(connections.Names(), c.SocketSource) && !connections.ReadsTCPInfo(c.SocketSource) {
		errs = append(errs, fmt.Errorf("connbeat.tcp_info needs the netlink socket source; %s cannot read tcp_info (set socket_source: auto or netlink)", c.SocketSource))
	}
	if c.ProcPath == "" {
		errs = append(errs, errors.New("connbeat.proc_path must not be empty"))
	}
	for i, name := range c.EnvironAllowlist {
		if !envName.MatchString(name) {
			errs = append(errs, fmt.Errorf("connbeat.environ_allowlist.%d: %q is not an environment variable name (letters, digits, underscore; not starting with a digit)", i, name))
		}
	}
	if c.ExposeEnviron && len(c.EnvironAllowlist) == 0 {
		errs = append(errs, errors.New("connbeat.expose_environ is on but connbeat.environ_allowlist is empty: list the variables to ship (environments hold secrets, so none are shipped by default)"))
	}
	errs = append(errs, c.Conntrack.validate())
	if err := c.CaptureMaps.Sizes().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("connbeat.capture_maps: %w", err))
	}
	return errors.Join(errs...)
}

var errNoEvents = errors.New("connbeat.conntrack.events must name at least one of new, update, destroy")

func (c *Conntrack) validate() error {
	var errs []error
	if len(c.Events) == 0 {
		errs = append(errs, errNoEvents)
	}
	seen := map[string]bool{}
	for i, e := range c.Events {
		if e != ConntrackNew && e != ConntrackUpdate && e != ConntrackDestroy {
			errs = append(errs, fmt.Errorf("connbeat.conntrack.events.%d must be one of new, update, destroy, got %q", i, e))
		} else if seen[e] {
			errs = append(errs, fmt.Errorf("connbeat.conntrack.events.%d: %q is listed twice", i, e))
		}
		seen[e] = true
	}
	if c.ReceiveBuffer < minReceiveBuffer || c.ReceiveBuffer > maxReceiveBuffer {
		errs = append(errs, fmt.Errorf("connbeat.conntrack.receive_buffer must be between 4KiB and 1GiB, got %d bytes", c.ReceiveBuffer))
	}
	if c.QueueSize < minQueueSize || c.QueueSize > maxQueueSize {
		errs = append(errs, fmt.Errorf("connbeat.conntrack.queue_size must be between 1MiB and 4GiB, got %d bytes", c.QueueSize))
	}
	if c.TrackFlows < 1 || c.TrackFlows > maxTrackFlows {
		errs = append(errs, fmt.Errorf("connbeat.conntrack.track_flows must be between 1 and %d, got %d", maxTrackFlows, c.TrackFlows))
	}
	return errors.Join(errs...)
}

func oneOf(key, value string, allowed ...string) error {
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	return fmt.Errorf("connbeat.%s must be one of %s, got %q", key, strings.Join(allowed, ", "), value)
}
