package bpfiter

import (
	"context"
	"encoding/binary"
	"io"
	"testing"

	"github.com/connbeat/connbeat/model"
)

// seedRecords are records of every kind the kernel writes, and a few it
// does not.
func seedRecords() [][]byte {
	return [][]byte{
		record{family: afINET, state: 1, lport: 40000, rport: 80, uid: 1000, inode: 12345,
			local: addr16("127.0.0.1"), remote: addr16("10.1.2.3")}.bytes(),
		record{family: afINET6, state: 10, lport: 22, inode: 7}.bytes(),
		record{family: afINET6, state: 1, lport: 80, rport: 40000, uid: 5, inode: 6,
			local: addr16("::ffff:127.0.0.1"), remote: addr16("::ffff:192.0.2.7")}.bytes(),
		record{family: afINET6, state: 1, lport: 443, rport: 50000, uid: 5, inode: 6,
			local: addr16("2001:db8::1"), remote: addr16("2001:db8::2")}.bytes(),
		record{family: afINET, state: stateTimeWait, substate: uint8(model.StateFinWait2), lport: 1, rport: 2}.bytes(),
		record{family: afINET6, state: stateTimeWait, substate: uint8(model.StateTimeWait), lport: 1, rport: 2}.bytes(),
		record{family: afINET, state: stateNewSynRecv, lport: 80, rport: 3, uid: 9, inode: 9}.bytes(),
		record{family: afINET, state: stateTimeWait, substate: stateNewSynRecv}.bytes(),
		record{family: 3, state: 1}.bytes(),
		record{transport: model.UDP, family: afINET, state: 7, lport: 53, uid: 101, inode: 11}.bytes(),
		record{transport: model.UDP, family: afINET6, state: 1, lport: 40000, rport: 53, uid: 1, inode: 12,
			local: addr16("::ffff:127.0.0.1"), remote: addr16("::ffff:127.0.0.53")}.bytes(),
		record{transport: model.UDP, family: afINET, state: 10}.bytes(),
		record{transport: 9, family: afINET, state: 1}.bytes(),
		record{family: afINET, state: 0}.bytes(),
		make([]byte, recLen-1),
		nil,
	}
}

// FuzzDecodeRecord decodes arbitrary bytes as one record: it must never
// panic, must refuse anything but a whole record, and what it accepts must
// be a socket the netlink source could report, which the test's encoder
// writes back into a record that decodes to the same socket.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range seedRecords() {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		s, err := decodeRecord(rec)
		if err != nil {
			return
		}
		if len(rec) != recLen {
			t.Fatalf("a record of %d bytes decoded", len(rec))
		}
		if !s.Transport.HasState(s.State) || s.State == model.StateNewSynRecv {
			t.Fatalf("state %v reported", s.State)
		}
		if !s.LocalIP.IsValid() || !s.RemoteIP.IsValid() || s.LocalIP.Is4In6() || s.RemoteIP.Is4In6() {
			t.Fatalf("addresses %v %v", s.LocalIP, s.RemoteIP)
		}
		if binary.NativeEndian.Uint16(rec) == afINET && (!s.LocalIP.Is4() || !s.RemoteIP.Is4()) {
			t.Fatalf("IPv4 record gave %v %v", s.LocalIP, s.RemoteIP)
		}
		if st := rec[recState]; (st == stateTimeWait || st == stateNewSynRecv) && (s.UID != 0 || s.Inode != 0) {
			t.Fatalf("socket without owner (state %d) reported uid %d inode %d", st, s.UID, s.Inode)
		}
		again, err := decodeRecord(recordOf(s))
		if err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", s, err)
		}
		if again != s {
			t.Fatalf("round trip: %+v became %+v", s, again)
		}
	})
}

// chunkReader hands out its data in pieces of the sizes sizes gives, in
// turn (each 1 to 256 bytes), whatever the caller's buffer could hold.
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := 1 + len(r.data) // all of it when there are no sizes
	if len(r.sizes) > 0 {
		n = 1 + int(r.sizes[r.i%len(r.sizes)])
		r.i++
	}
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// FuzzReadRecords reads arbitrary bytes through the chunk loop with
// arbitrary read sizes and a small buffer: the result must be what
// decoding the bytes a record at a time gives, however the reads split
// the records.
func FuzzReadRecords(f *testing.F) {
	var all []byte
	for _, r := range seedRecords() {
		if len(r) == recLen {
			all = append(all, r...)
		}
	}
	f.Add(all, []byte{0, 54, 56, 200}, uint8(0))
	f.Add(all, []byte{}, uint8(200))
	f.Add(all[:len(all)-3], []byte{recLen - 1}, uint8(1))
	f.Add(all[recLen*7:recLen*10], []byte{9}, uint8(recLen))
	f.Fuzz(func(t *testing.T, data, sizes []byte, extra uint8) {
		var want []model.Socket
		records, skipped := len(data)/recLen, 0
		for off := 0; off+recLen <= len(data); off += recLen {
			s, err := decodeRecord(data[off : off+recLen])
			if err != nil {
				skipped++
				continue
			}
			want = append(want, s)
		}
		wantErr := len(data)%recLen != 0 || (records > 0 && skipped == records)

		buf := make([]byte, recLen+int(extra))
		r := &chunkReader{data: data, sizes: sizes}
		got, gotRecords, gotSkipped, err := readRecords(context.Background(), r, buf, nil)
		if (err != nil) != wantErr {
			t.Fatalf("error %v, want one: %v", err, wantErr)
		}
		if gotRecords != records || gotSkipped != skipped {
			t.Fatalf("%d records, %d skipped; want %d, %d", gotRecords, gotSkipped, records, skipped)
		}
		if len(got) != len(want) {
			t.Fatalf("%d sockets, want %d", len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("socket %d: %+v, want %+v", i, got[i], want[i])
			}
		}
		if len(r.data) != 0 {
			t.Fatalf("%d bytes left unread", len(r.data))
		}
	})
}
