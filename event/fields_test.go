package event

import (
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/beats/v7/libbeat/common"
	"github.com/elastic/beats/v7/libbeat/mapping"
	"github.com/elastic/beats/v7/libbeat/outputs/codec/json"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/mapstr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/model"
)

// leaves lists the dotted paths of m's values that are not objects.
func leaves(prefix string, m mapstr.M, out map[string]bool) {
	for k, v := range m {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		if sub, ok := v.(mapstr.M); ok {
			leaves(path, sub, out)
			continue
		}
		out[path] = true
	}
}

// TestFieldsDeclared builds every kind of event with every optional field
// set and checks that fields.yml, which `connbeat export template` turns
// into the index template, declares each field.
func TestFieldsDeclared(t *testing.T) {
	fields, err := mapping.LoadFieldsYaml("../fields.yml")
	require.NoError(t, err)
	declared := map[string]bool{}
	var objects []string
	for _, k := range fields.GetKeys() {
		declared[k] = true
		if f := fields.GetField(k); f != nil && f.Type == "object" {
			objects = append(objects, k+".")
		}
	}
	// Fields of dotted names (parent.pid) are not found by GetField.
	objects = append(objects, "local_process.environ.", "process.env_vars.")

	seen := map[string]bool{}
	for _, e := range everyEvent() {
		leaves("", e, seen)
	}
	var missing []string
	for path := range seen {
		if declared[path] {
			continue
		}
		inObject := false
		for _, o := range objects {
			inObject = inObject || strings.HasPrefix(path, o)
		}
		if !inObject {
			missing = append(missing, path)
		}
	}
	sort.Strings(missing)
	assert.Empty(t, missing, "fields events carry that fields.yml does not declare")
	for _, want := range []string{"connbeat.netns", "transport", "Reply.Layer3.Src", "destination.nat.ip", "connbeat.conntrack.resync", "icmp.type",
		"container.id", "container.runtime", "connbeat.peer.process.pid", "connbeat.peer.container.id", "remote_process.pid", "remote_container.id",
		"connbeat.flow.rtt_us", "connbeat.flow.segs_received", "event.outcome"} {
		assert.True(t, seen[want], "the events above carry %s", want)
	}
}

// everyEvent builds every kind of event, in every format, with every
// optional field set.
func everyEvent() []mapstr.M {
	var events []mapstr.M
	inContainer := *proc
	inContainer.Container = &model.Container{ID: "c0ffee", Runtime: "docker"}
	for _, format := range Formats() {
		b := NewBuilder(format, host)
		for _, r := range []*model.Report{
			report(model.Listener, model.Listening, "10.0.0.1", 22, "0.0.0.0", 0, &inContainer),
			report(model.Connection, model.Inbound, "10.0.0.1", 22, "10.0.0.9", 40000, &inContainer),
			report(model.Connection, model.Outbound, "10.0.0.1", 40000, "10.0.0.9", 443, &inContainer),
			udpReport(model.Listener, model.Listening, "0.0.0.0", 53, "0.0.0.0", 0, proc),
			udpReport(model.Connection, model.Outbound, "10.0.0.1", 40000, "10.0.0.53", 53, proc),
		} {
			r.Owners = 3
			r.Socket.NetNS = 4026531840
			r.Socket.Info = &model.TCPInfo{RTTMicros: 1}
			if r.Kind == model.Connection {
				r.Peer = &inContainer
			}
			events = append(events, b.Build(r, ts).Fields)
		}
		flows := []*model.Flow{dnatDestroy()}
		snat := dnatDestroy()
		snat.Reply = tuple(6, "192.0.2.2", 8080, "198.51.100.1", 61000)
		snat.Zone, snat.Mark, snat.Resync = 1, 2, true
		flows = append(flows, snat, &model.Flow{
			Event:    model.FlowNew,
			Original: model.Tuple{Src: netip.MustParseAddr("::1"), Dst: netip.MustParseAddr("::1"), Proto: 58, ICMPType: 128},
			Reply:    model.Tuple{Src: netip.MustParseAddr("::1"), Dst: netip.MustParseAddr("::1"), Proto: 58, ICMPType: 129},
		})
		for _, f := range flows {
			events = append(events, b.BuildFlow(f, ts).Fields)
		}
		for _, f := range []*model.ConnFlow{
			connFlow(model.Outbound, model.TCP, "10.0.0.1", 40000, "10.0.0.9", 443),
			connFlow(model.Inbound, model.UDP, "fd00::1", 53, "fd00::9", 41000),
		} {
			events = append(events, b.ConnFlow(f, ts).Fields)
		}
	}
	return events
}

// TestEventsNeedNoNormalization: the agent publishes with libbeat's event
// normalization off (a deep copy of every event). That is safe while the
// builders make what normalization would: every object a mapstr.M, which
// processors walk, and every event encoded as its normalized copy is.
func TestEventsNeedNoNormalization(t *testing.T) {
	conv := common.NewGenericEventConverter(false, logp.NewNopLogger())
	enc := json.New("9.0.0", json.Config{})
	for _, fields := range everyEvent() {
		objectsAreMapStr(t, "", reflect.ValueOf(fields))
		normalized, err := enc.Encode("connbeat", &beat.Event{Timestamp: ts, Fields: conv.Convert(fields)})
		require.NoError(t, err)
		want := string(normalized)
		got, err := enc.Encode("connbeat", &beat.Event{Timestamp: ts, Fields: fields})
		require.NoError(t, err)
		// Equal as JSON: the keys of a map come in no set order.
		assert.JSONEq(t, want, string(got))
	}
}

// objectsAreMapStr fails the test for a map in v of a type other than
// mapstr.M.
func objectsAreMapStr(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	if v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Map:
		if v.Type() != reflect.TypeOf(mapstr.M{}) {
			t.Errorf("%s is a %s, not a mapstr.M", path, v.Type())
			return
		}
		for _, k := range v.MapKeys() {
			objectsAreMapStr(t, path+"."+k.String(), v.MapIndex(k))
		}
	case reflect.Slice:
		for i := range v.Len() {
			objectsAreMapStr(t, fmt.Sprintf("%s[%d]", path, i), v.Index(i))
		}
	case reflect.Pointer:
		t.Errorf("%s is a pointer (%s)", path, v.Type())
	}
}
