package model

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNames(t *testing.T) {
	assert.Equal(t, []string{"tcp", "udp", "unknown(7)"},
		[]string{TCP.String(), UDP.String(), Transport(7).String()})
	assert.Equal(t, []string{"established", "listen", "new_syn_recv", "unknown(0)", "unknown(13)"},
		[]string{StateEstablished.String(), StateListen.String(), StateNewSynRecv.String(), State(0).String(), State(13).String()})
	assert.Equal(t, []string{"listener", "connection", "conntrack", "unknown"},
		[]string{Listener.String(), Connection.String(), Conntrack.String(), Kind(0).String()})
	assert.Equal(t, []string{"listening", "inbound", "outbound", "forwarded", "unknown"},
		[]string{Listening.String(), Inbound.String(), Outbound.String(), Forwarded.String(), Direction(9).String()})
}

func TestStateValid(t *testing.T) {
	for s := range State(20) {
		assert.Equal(t, s >= 1 && s <= 12, s.Valid(), "state %d", s)
	}
}

func TestUnavailable(t *testing.T) {
	cause := errors.New("operation not permitted")
	err := fmt.Errorf("opening: %w", &UnavailableError{Source: "bpf", Err: cause})
	assert.True(t, IsUnavailable(err))
	assert.ErrorIs(t, err, cause)
	assert.EqualError(t, err, "opening: socket source bpf unavailable: operation not permitted")
	assert.False(t, IsUnavailable(cause))
}

func TestFlowNames(t *testing.T) {
	assert.Equal(t, []string{"NEW", "UPDATE", "DESTROY", "UNKNOWN(0)"},
		[]string{FlowNew.String(), FlowUpdate.String(), FlowDestroy.String(), FlowEvent(0).String()})
	assert.Equal(t, []string{"icmp", "tcp", "udp", "icmpv6", "sctp", "unknown"},
		[]string{ProtoName(1), ProtoName(6), ProtoName(17), ProtoName(58), ProtoName(132), ProtoName(200)})
}

func TestTransports(t *testing.T) {
	assert.Equal(t, AllTransports, TransportsOf(TCP, UDP))
	assert.True(t, TransportsOf(UDP).Has(UDP))
	assert.False(t, TransportsOf(UDP).Has(TCP))
	assert.False(t, AllTransports.Has(Transport(9)))
	assert.Equal(t, AllTransports, Transports(0).OrAll())
	assert.Equal(t, TransportsOf(TCP), TransportsOf(TCP).OrAll())
	assert.Equal(t, []string{"tcp,udp", "udp", ""},
		[]string{AllTransports.String(), TransportsOf(UDP).String(), Transports(0).String()})
}

func TestTransportHasState(t *testing.T) {
	for st := range State(20) {
		assert.Equal(t, st.Valid(), TCP.HasState(st), "tcp %d", st)
		assert.Equal(t, st == StateClose || st == StateEstablished, UDP.HasState(st), "udp %d", st)
		assert.False(t, Transport(5).HasState(st))
	}
}
