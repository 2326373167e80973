// Package fake is an in-memory flowgate.Host for native tests of Go transforms: a batch made of flowgate.Flow
// values, answering the `batch` methods as the host does (string columns dictionary-encoded, changes recorded
// and applied to the flows, getters returning the flows as they entered), and counting every call.
package fake

import (
	"strconv"

	"gofilter/flowgate"
)

// Host is a batch of flows. Flows are the flows as they entered; Changed are them with the setters applied.
type Host struct {
	Flows   []flowgate.Flow
	Changed []flowgate.Flow
	// Calls counts calls by method name: "len", "strings", "ints", "actions", "reporters", "endpoint-types",
	// "labels", "policies", "record", "set-string", ...; and per field, e.g. "strings:1" for source-namespace.
	Calls map[string]int
}

// New is a host batch of these flows.
func New(flows ...flowgate.Flow) *Host {
	h := &Host{Flows: flows, Changed: make([]flowgate.Flow, len(flows)), Calls: map[string]int{}}
	copy(h.Changed, flows)
	return h
}

func (h *Host) count(name string, field int) {
	h.Calls[name]++
	if field >= 0 {
		h.Calls[name+":"+strconv.Itoa(field)]++
	}
}

// CallsTo is how many times method was called for field (e.g. CallsTo("strings", int(flowgate.Proto))).
func (h *Host) CallsTo(method string, field int) int {
	return h.Calls[method+":"+strconv.Itoa(field)]
}

func (h *Host) flow(i int) *flowgate.Flow {
	if i < 0 || i >= len(h.Flows) {
		panic("fake: flow out of range (the host traps)")
	}
	return &h.Flows[i]
}

func stringField(f *flowgate.Flow, field flowgate.StringField) *string {
	switch field {
	case flowgate.SourceName:
		return &f.SourceName
	case flowgate.SourceNamespace:
		return &f.SourceNamespace
	case flowgate.DestName:
		return &f.DestName
	case flowgate.DestNamespace:
		return &f.DestNamespace
	case flowgate.DestServiceName:
		return &f.DestServiceName
	case flowgate.DestServiceNamespace:
		return &f.DestServiceNamespace
	case flowgate.DestServicePortName:
		return &f.DestServicePortName
	case flowgate.Proto:
		return &f.Proto
	}
	panic("fake: bad string field")
}

func intField(f *flowgate.Flow, field flowgate.IntField) *int64 {
	switch field {
	case flowgate.DestPort:
		return &f.DestPort
	case flowgate.DestServicePort:
		return &f.DestServicePort
	case flowgate.StartTime:
		return &f.StartTime
	case flowgate.EndTime:
		return &f.EndTime
	case flowgate.PacketsIn:
		return &f.PacketsIn
	case flowgate.PacketsOut:
		return &f.PacketsOut
	case flowgate.BytesIn:
		return &f.BytesIn
	case flowgate.BytesOut:
		return &f.BytesOut
	case flowgate.NumConnectionsStarted:
		return &f.NumConnectionsStarted
	case flowgate.NumConnectionsCompleted:
		return &f.NumConnectionsCompleted
	case flowgate.NumConnectionsLive:
		return &f.NumConnectionsLive
	}
	panic("fake: bad int field")
}

func endpointField(f *flowgate.Flow, field flowgate.EndpointField) *flowgate.EndpointType {
	if field == flowgate.SourceType {
		return &f.SourceType
	}
	return &f.DestType
}

func labelsField(f *flowgate.Flow, field flowgate.LabelsField) *[]string {
	if field == flowgate.SourceLabels {
		return &f.SourceLabels
	}
	return &f.DestLabels
}

func policiesField(f *flowgate.Flow, field flowgate.PoliciesField) *[]flowgate.PolicyHit {
	if field == flowgate.EnforcedPolicies {
		return &f.EnforcedPolicies
	}
	return &f.PendingPolicies
}

func (h *Host) Len() int { h.count("len", -1); return len(h.Flows) }

func (h *Host) Strings(field flowgate.StringField) ([]string, []uint32) {
	h.count("strings", int(field))
	var values []string
	index := map[string]uint32{}
	at := make([]uint32, len(h.Flows))
	for i := range h.Flows {
		v := *stringField(&h.Flows[i], field)
		k, ok := index[v]
		if !ok {
			k = uint32(len(values))
			index[v] = k
			values = append(values, v)
		}
		at[i] = k
	}
	return values, at
}

func (h *Host) Ints(field flowgate.IntField) []int64 {
	h.count("ints", int(field))
	out := make([]int64, len(h.Flows))
	for i := range h.Flows {
		out[i] = *intField(&h.Flows[i], field)
	}
	return out
}

func (h *Host) Actions() []flowgate.Action {
	h.count("actions", -1)
	out := make([]flowgate.Action, len(h.Flows))
	for i := range h.Flows {
		out[i] = h.Flows[i].Action
	}
	return out
}

func (h *Host) Reporters() []flowgate.Reporter {
	h.count("reporters", -1)
	out := make([]flowgate.Reporter, len(h.Flows))
	for i := range h.Flows {
		out[i] = h.Flows[i].Reporter
	}
	return out
}

func (h *Host) EndpointTypes(field flowgate.EndpointField) []flowgate.EndpointType {
	h.count("endpoint-types", int(field))
	out := make([]flowgate.EndpointType, len(h.Flows))
	for i := range h.Flows {
		out[i] = *endpointField(&h.Flows[i], field)
	}
	return out
}

func (h *Host) Labels(flow int, field flowgate.LabelsField) []string {
	h.count("labels", int(field))
	return append([]string(nil), *labelsField(h.flow(flow), field)...)
}

func (h *Host) Policies(flow int, field flowgate.PoliciesField) []flowgate.PolicyHit {
	h.count("policies", int(field))
	return append([]flowgate.PolicyHit(nil), *policiesField(h.flow(flow), field)...)
}

func (h *Host) Record(flow int) flowgate.Flow {
	h.count("record", -1)
	return *h.flow(flow)
}

func (h *Host) SetString(flow int, field flowgate.StringField, value string) {
	h.count("set-string", int(field))
	h.flow(flow)
	*stringField(&h.Changed[flow], field) = value
}

func (h *Host) SetInt(flow int, field flowgate.IntField, value int64) {
	h.count("set-int", int(field))
	h.flow(flow)
	*intField(&h.Changed[flow], field) = value
}

func (h *Host) SetAction(flow int, value flowgate.Action) {
	h.count("set-action", -1)
	h.flow(flow)
	h.Changed[flow].Action = value
}

func (h *Host) SetReporter(flow int, value flowgate.Reporter) {
	h.count("set-reporter", -1)
	h.flow(flow)
	h.Changed[flow].Reporter = value
}

func (h *Host) SetEndpointType(flow int, field flowgate.EndpointField, value flowgate.EndpointType) {
	h.count("set-endpoint-type", int(field))
	h.flow(flow)
	*endpointField(&h.Changed[flow], field) = value
}

func (h *Host) SetLabels(flow int, field flowgate.LabelsField, value []string) {
	h.count("set-labels", int(field))
	h.flow(flow)
	*labelsField(&h.Changed[flow], field) = append([]string(nil), value...)
}

func (h *Host) SetPolicies(flow int, field flowgate.PoliciesField, value []flowgate.PolicyHit) {
	h.count("set-policies", int(field))
	h.flow(flow)
	*policiesField(&h.Changed[flow], field) = append([]flowgate.PolicyHit(nil), value...)
}
