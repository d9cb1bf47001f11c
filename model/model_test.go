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
	assert.Equal(t, []string{"listener", "connection", "unknown"},
		[]string{Listener.String(), Connection.String(), Kind(0).String()})
	assert.Equal(t, []string{"listening", "inbound", "outbound", "unknown"},
		[]string{Listening.String(), Inbound.String(), Outbound.String(), Direction(9).String()})
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
