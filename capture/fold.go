package capture

import (
	"net/netip"

	"github.com/connbeat/connbeat/model"
)

// apply folds one record in; c.mu is held.
func (c *Capture) apply(r *record) {
	switch r.typ {
	case recListen, recUnlisten:
		r.sock.State = model.StateListen
		r.sock.RemoteIP = netip.Addr{}
		c.add(r.cookie, Conn{Socket: r.sock, Direction: model.Listening, Owner: r.owner, Closed: r.typ == recUnlisten})
	case recOpen:
		r.sock.State = model.StateEstablished
		c.add(r.cookie, Conn{Socket: r.sock, Direction: direction(r.flags), Owner: r.owner})
	case recClose:
		c.closeTCP(r)
	case recUDP:
		r.sock.State = model.StateEstablished
		c.add(0, Conn{Socket: r.sock, Direction: udpDirection(r.flags), Owner: r.owner})
	}
}

// lingers reports whether a TCP socket that left oldState for CLOSE lives
// on as a TIME_WAIT socket the tables list: only the side that closed
// first (FIN_WAIT1, FIN_WAIT2, CLOSING) does; the other (LAST_ACK) and an
// aborted connection are gone at once.
func lingers(oldState model.State) bool {
	switch oldState {
	case model.StateFinWait1, model.StateFinWait2, model.StateClosing:
		return true
	}
	return false
}

func direction(flags uint8) model.Direction {
	if flags&flagPassive != 0 {
		return model.Inbound
	}
	return model.Outbound
}

// udpDirection: a pair first seen receiving was started by the peer.
func udpDirection(flags uint8) model.Direction {
	if flags&flagRecv != 0 {
		return model.Inbound
	}
	return model.Outbound
}

// add keeps a connection for the next Drain; a close of a connection
// opened since the last Drain replaces its open. cookie 0 is never paired.
func (c *Capture) add(cookie uint64, conn Conn) {
	conn.Cookie = cookie
	if i, ok := c.pending[cookie]; ok && cookie != 0 {
		if conn.Owner.PID == 0 {
			conn.Owner = c.conns[i].Owner
		}
		c.conns[i] = conn
		return
	}
	if len(c.conns) >= c.opts.MaxPending {
		c.stats.PendingDropped++
		return
	}
	if cookie != 0 {
		c.pending[cookie] = len(c.conns)
	}
	c.conns = append(c.conns, conn)
}

// closeTCP folds in a TCP close: a connection for the next Drain (unless
// it never opened), its owner for TIME_WAIT lookups, and its flow.
func (c *Capture) closeTCP(r *record) {
	end := endOf(r.oldState, r.skErr)
	dir := direction(r.flags)
	r.sock.State = model.StateEstablished
	if end != model.EndRefused && end != model.EndFailed {
		c.add(r.cookie, Conn{Socket: r.sock, Direction: dir, Owner: r.owner, Closed: true})
		if r.owner.PID != 0 && lingers(r.oldState) {
			c.closed.put(r.sock, r.owner, c.wall(r.ts))
		}
	} else if i, ok := c.pending[r.cookie]; ok {
		// Never opened: nothing to report but the flow.
		c.conns[i].Closed = true
	}
	if !c.opts.KeepFlows {
		return
	}
	if len(c.flows) >= c.opts.MaxFlows {
		c.stats.FlowsDropped++
		return
	}
	r.sock.State = model.StateClose
	f := model.ConnFlow{
		Socket:        r.sock,
		Direction:     dir,
		Process:       c.flowProcess(r.owner),
		Start:         c.wall(r.start),
		End:           c.wall(r.ts),
		BytesSent:     r.counters.bytesSent,
		BytesReceived: r.counters.bytesReceived,
		SegsSent:      uint64(r.counters.segsSent),
		SegsReceived:  uint64(r.counters.segsReceived),
		Retransmits:   r.counters.retrans,
		SRTTMicros:    r.counters.srttMicros,
		Ended:         end,
	}
	if f.Start.IsZero() {
		f.Start = f.End // opened before the capture started, or evicted
	}
	c.flows = append(c.flows, f)
}

// maxFlowProcesses bounds the processes flows share (flowProcess).
const maxFlowProcesses = 4096

// flowProcess is what the kernel said about the owner, for a flow: one
// value for every flow of that owner, so that a busy client's flows do
// not each cost a process. Flows' processes are read, never written.
// c.mu is held.
func (c *Capture) flowProcess(o Owner) *model.Process {
	if o.PID == 0 {
		return nil
	}
	if p, ok := c.flowProcs[o]; ok {
		return p
	}
	if len(c.flowProcs) >= maxFlowProcesses {
		clear(c.flowProcs)
	}
	p := &model.Process{PID: o.PID, Name: o.Comm, UID: o.UID}
	c.flowProcs[o] = p
	return p
}
