package netlink

import (
	"bytes"
	"testing"

	"github.com/connbeat/connbeat/internal/testkit/frames"
	"github.com/connbeat/connbeat/model"
)

// FuzzFeed feeds arbitrary bytes to the dump decoder, seeded with the
// captured real dump: it must never panic, and whatever it returns must be
// sockets the kernel could have sent.
func FuzzFeed(f *testing.F) {
	for _, frame := range frames.Read(f, fixtureDump) {
		f.Add(frame, true, false)
	}
	info := &model.TCPInfo{RTTMicros: 1, BytesAcked: 2}
	f.Add(appendMsg(appendMsg(nil, msgTypeDiag, flagDumpIntr, 0, diagBody(v6msg(1, "::1", 1, "::1", 2), info)),
		msgTypeDone, 0, 0, doneBody(0)), true, false)
	f.Add(appendMsg(nil, msgTypeError, 0, 0, doneBody(-2)), false, false)
	// A UDP dump: a bound socket, a connected one (with an attribute, which
	// a UDP dump does not carry), one in a state UDP has not.
	f.Add(appendMsg(appendMsg(appendMsg(appendMsg(nil,
		msgTypeDiag, 0, 0, diagBody(v4msg(7, "0.0.0.0", 53, "0.0.0.0", 0), nil)),
		msgTypeDiag, 0, 0, diagBody(v6msg(1, "::ffff:127.0.0.1", 40000, "::ffff:127.0.0.1", 53), info)),
		msgTypeDiag, 0, 0, diagBody(v4msg(10, "127.0.0.1", 53, "0.0.0.0", 0), nil)),
		msgTypeDone, 0, 0, doneBody(0)), true, true)
	f.Fuzz(func(t *testing.T, buf []byte, wantInfo, udp bool) {
		var h header
		seq := uint32(0)
		if h.unmarshal(buf) == nil {
			seq = h.Seq
		}
		d := decoder{wantInfo: wantInfo}
		if udp {
			d.transport = model.UDP
		}
		d.reset(nil)
		_, _ = d.feed(buf, seq)
		if max := len(buf) / (headerLen + messageLen); len(d.sockets) > max {
			t.Fatalf("%d sockets from %d bytes (at most %d)", len(d.sockets), len(buf), max)
		}
		for _, s := range d.sockets {
			if s.Transport != d.transport || !s.Transport.HasState(s.State) || !s.LocalIP.IsValid() || !s.RemoteIP.IsValid() {
				t.Fatalf("invalid socket %+v", s)
			}
			if s.Transport == model.UDP && s.Info != nil {
				t.Fatalf("tcp_info on a UDP socket: %+v", s)
			}
			if s.LocalIP.Is4In6() || s.RemoteIP.Is4In6() {
				t.Fatalf("mapped address left in %+v", s)
			}
			if s.Info != nil && (!wantInfo || s.State == model.StateListen) {
				t.Fatalf("tcp_info where none was asked for: %+v", s)
			}
		}
	})
}

// FuzzRequest checks that request decoding never panics and that marshal
// gives back the bytes it decoded (but the padding byte).
func FuzzRequest(f *testing.F) {
	r := request{Family: familyINET6, Protocol: protoTCP, Ext: 2, States: allStates}
	f.Add(r.marshal(nil))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r request
		if err := r.unmarshal(b); err != nil {
			if len(b) >= requestLen {
				t.Fatalf("%d bytes refused: %v", len(b), err)
			}
			return
		}
		want := bytes.Clone(b[:requestLen])
		want[3] = 0
		if got := r.marshal(nil); !bytes.Equal(got, want) {
			t.Fatalf("round trip: got %x want %x", got, want)
		}
	})
}

// FuzzMessage checks inet_diag_msg decoding the same way.
func FuzzMessage(f *testing.F) {
	m := v4msg(1, "127.0.0.1", 1, "127.0.0.1", 2)
	f.Add(m.marshal(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m message
		if err := m.unmarshal(b); err != nil {
			return
		}
		if got := m.marshal(nil); !bytes.Equal(got, b[:messageLen]) {
			t.Fatalf("round trip: got %x want %x", got, b[:messageLen])
		}
		if s, ok := m.socket(); ok && (!s.State.Valid() || !s.LocalIP.IsValid()) {
			t.Fatalf("socket() accepted %+v", s)
		}
	})
}

// FuzzTCPInfo checks that tcp_info decoding never panics and reads back
// what encodeTCPInfo wrote.
func FuzzTCPInfo(f *testing.F) {
	f.Add(encodeTCPInfo(nil, &model.TCPInfo{RTTMicros: 5, SegsIn: 9}))
	f.Add(make([]byte, tcpInfoMinLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got model.TCPInfo
		if err := decodeTCPInfo(b, &got); err != nil {
			return
		}
		var again model.TCPInfo
		if err := decodeTCPInfo(encodeTCPInfo(nil, &got), &again); err != nil || again != got {
			t.Fatalf("round trip: %+v -> %+v (%v)", got, again, err)
		}
	})
}

// FuzzFeedOne feeds arbitrary bytes to the decoder of an exact lookup's
// answer: it must never panic and yields at most one socket.
func FuzzFeedOne(f *testing.F) {
	f.Add(appendMsg(nil, msgTypeDiag, 0, 0, diagBody(v6msg(1, "::1", 1, "::1", 2), nil)))
	f.Add(appendMsg(nil, msgTypeError, 0, 0, doneBody(-2)))
	f.Add(appendMsg(nil, msgTypeError, 0, 0, doneBody(0)))
	f.Fuzz(func(t *testing.T, buf []byte) {
		var h header
		seq := uint32(0)
		if h.unmarshal(buf) == nil {
			seq = h.Seq
		}
		var d decoder
		answered, err := d.feedOne(buf, seq)
		if len(d.sockets) > 1 || (len(d.sockets) == 1 && (!answered || err != nil)) {
			t.Fatalf("%d sockets, answered %v, err %v", len(d.sockets), answered, err)
		}
	})
}
