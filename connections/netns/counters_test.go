package netns

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func readFixture(t testing.TB, name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// TestCountersFixture parses the three files as this kernel (6.18) wrote
// them.
func TestCountersFixture(t *testing.T) {
	c, err := ParseCounters(readFixture(t, "snmp"), readFixture(t, "sockstat"), readFixture(t, "sockstat6"))
	require.NoError(t, err)
	assert.Equal(t, Counters{
		ActiveOpens: 47109, PassiveOpens: 47008, AttemptFails: 10, EstabResets: 80636, CurrEstab: 1,
		TCPInuse: 2, TCPTimeWait: 446, UDPInuse: 1,
	}, c)

	r := &CounterReader{}
	got, err := r.Read("testdata")
	require.NoError(t, err)
	assert.Equal(t, c, got, "read from files")
}

func TestCountersErrors(t *testing.T) {
	snmp, sockstat := readFixture(t, "snmp"), readFixture(t, "sockstat")
	for name, tc := range map[string]struct {
		snmp, sockstat string
		err            string
	}{
		"no Tcp":        {"Udp: a\nUdp: 1\n", string(sockstat), "no Tcp: lines"},
		"short values":  {"Tcp: ActiveOpens PassiveOpens\nTcp: 1\n", string(sockstat), "as many names as values"},
		"missing field": {"Tcp: ActiveOpens PassiveOpens\nTcp: 1 2\n", string(sockstat), "2 of the 5 counters"},
		"negative":      {"Tcp: ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab\nTcp: 1 2 3 4 -5\n", string(sockstat), "CurrEstab"},
		"header only":   {"Tcp: ActiveOpens\n", string(sockstat), "no Tcp: lines"},
		"odd sockstat":  {string(snmp), "TCP: inuse 2 orphan\n", "orphan has no value"},
		"bad inuse":     {string(snmp), "TCP: inuse x\n", "TCP inuse"},
		"huge sockstat": {string(snmp), "TCP: inuse 99999999999999999999\n", "TCP inuse"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseCounters([]byte(tc.snmp), []byte(tc.sockstat), nil)
			require.ErrorContains(t, err, tc.err)
		})
	}

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "snmp"), make([]byte, maxCountersFile+1), 0o644))
	_, err := (&CounterReader{}).Read(dir)
	assert.ErrorContains(t, err, "larger than")
	_, err = (&CounterReader{}).Read(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// FuzzCounters: any bytes as the three files: an error or counters, never
// a panic.
func FuzzCounters(f *testing.F) {
	f.Add(readFixture(f, "snmp"), readFixture(f, "sockstat"), readFixture(f, "sockstat6"))
	f.Add([]byte("Tcp: ActiveOpens\nTcp: 1 2\n"), []byte("TCP: inuse"), []byte(": \n: a b c"))
	f.Add([]byte("Tcp: \nTcp: \n"), []byte("sockets: used 1 2"), []byte{})
	f.Fuzz(func(t *testing.T, snmp, sockstat, sockstat6 []byte) {
		_, _ = ParseCounters(snmp, sockstat, sockstat6)
	})
}
