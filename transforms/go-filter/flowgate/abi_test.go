package flowgate

// The canonical ABI codec against a fake linear memory: round trips, and the offsets pinned one by one to
// what `wit-bindgen c` 0.46.0 generates for this WIT on wasm32 (transformer.c: e.g. the flow's dest-port at
// 10*sizeof(void*) = 40, an outcome's payload at sizeof(void*) = 4, an attribute's value at 8).

import (
	"math"
	"reflect"
	"testing"
)

// fakeMemory is a fixed buffer (never reallocated, so views stay valid) with a bump allocator from 8.
type fakeMemory struct {
	buf []byte
	top uint32
}

func newFakeMemory() *fakeMemory { return &fakeMemory{buf: make([]byte, 1<<20), top: 8} }

func (m *fakeMemory) bytes(ptr, n uint32) []byte { return m.buf[ptr : ptr+n : ptr+n] }

func (m *fakeMemory) alloc(size, align uint32) (uint32, []byte) {
	p := (m.top + align - 1) &^ (align - 1)
	m.top = p + size
	return p, m.buf[p : p+size : p+size]
}

func (m *fakeMemory) str(b []byte, off int) string {
	return string(m.bytes(u32(b, off), u32(b, off+4)))
}

func richFlow() Flow {
	trigger := PolicyTrigger{Kind: PolicyKindCalicoNetworkPolicy, Namespace: "payments", Name: "allow-checkout",
		Tier: "default", Action: ActionAllow, PolicyIndex: 3, RuleIndex: 4}
	return Flow{
		SourceName: "checkout-*", SourceNamespace: "checkout", SourceType: EndpointWorkload,
		DestName: "postgres-*", DestNamespace: "payments", DestType: EndpointNetworkSet, DestPort: 5432,
		DestServiceName: "postgres", DestServiceNamespace: "payments", DestServicePortName: "pg",
		DestServicePort: 15432, Proto: "tcp", Reporter: ReporterDst, Action: ActionDeny,
		EnforcedPolicies: []PolicyHit{
			{Kind: PolicyKindEndOfTier, Tier: "default", Action: ActionDeny, PolicyIndex: 1, RuleIndex: -1, Trigger: &trigger},
			{Kind: PolicyKindNetworkPolicy, Namespace: "payments", Name: "np", Tier: "default", Action: ActionAllow},
		},
		PendingPolicies: nil,
		StartTime:       1_764_970_845, EndTime: 1_764_970_860,
		SourceLabels: []string{"app=checkout", "pod-template-hash=abc"}, DestLabels: nil,
		PacketsIn: 1, PacketsOut: 2, BytesIn: 3, BytesOut: 4,
		NumConnectionsStarted: 5, NumConnectionsCompleted: 6, NumConnectionsLive: 7,
	}
}

func TestAFlowRoundTripsAndSitsWhereWitBindgenPutsIt(t *testing.T) {
	m := newFakeMemory()
	_, b := m.alloc(sizeFlow, 8)
	f := richFlow()
	putFlow(m, b, &f)
	if got := liftFlow(m, b); !reflect.DeepEqual(got, f) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, f)
	}
	// Offsets from transformer.c's flowgate_transform_types_method_batch_record (sizeof(void*) = 4).
	checks := []struct {
		name string
		ok   bool
	}{
		{"source-name@0", m.str(b, 0) == "checkout-*"},
		{"source-namespace@8", m.str(b, 8) == "checkout"},
		{"source-type@16", b[16] == byte(EndpointWorkload)},
		{"dest-name@20", m.str(b, 20) == "postgres-*"},
		{"dest-namespace@28", m.str(b, 28) == "payments"},
		{"dest-type@36", b[36] == byte(EndpointNetworkSet)},
		{"dest-port@40", i64(b, 40) == 5432},
		{"dest-service-name@48", m.str(b, 48) == "postgres"},
		{"dest-service-namespace@56", m.str(b, 56) == "payments"},
		{"dest-service-port-name@64", m.str(b, 64) == "pg"},
		{"dest-service-port@72", i64(b, 72) == 15432},
		{"proto@80", m.str(b, 80) == "tcp"},
		{"reporter@88", b[88] == byte(ReporterDst)},
		{"action@89", b[89] == byte(ActionDeny)},
		{"enforced-policies@92", u32(b, 96) == 2 && u32(b, 92)%8 == 0},
		{"pending-policies@100 empty is (0,0)", u32(b, 100) == 0 && u32(b, 104) == 0},
		{"start-time@112", i64(b, 112) == 1_764_970_845},
		{"end-time@120", i64(b, 120) == 1_764_970_860},
		{"source-labels@128", u32(b, 132) == 2},
		{"dest-labels@136", u32(b, 136) == 0 && u32(b, 140) == 0},
		{"packets-in@144", i64(b, 144) == 1},
		{"num-connections-live@192", i64(b, 192) == 7},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s", c.name)
		}
	}
	// A policy hit: 104 bytes; the trigger option at 48, its record at 56.
	hits := m.bytes(u32(b, 92), 2*sizePolicyHit)
	h := hits[:sizePolicyHit]
	if h[0] != byte(PolicyKindEndOfTier) || m.str(h, 20) != "default" || h[28] != byte(ActionDeny) ||
		i64(h, 32) != 1 || i64(h, 40) != -1 || h[48] != 1 || h[56] != byte(PolicyKindCalicoNetworkPolicy) ||
		m.str(h, 60) != "payments" || m.str(h, 68) != "allow-checkout" || m.str(h, 76) != "default" ||
		h[84] != byte(ActionAllow) || i64(h, 88) != 3 || i64(h, 96) != 4 {
		t.Errorf("policy hit layout: % x", h)
	}
	if h2 := hits[sizePolicyHit:]; h2[48] != 0 || m.str(h2, 12) != "np" {
		t.Errorf("second hit (no trigger): % x", h2)
	}
	labels := m.bytes(u32(b, 128), 2*sizeString)
	if m.str(labels, 8) != "pod-template-hash=abc" {
		t.Errorf("labels")
	}
}

func TestColumnsAndConfigAreLiftedAsTheHostLowersThem(t *testing.T) {
	m := newFakeMemory()
	// A string column as the host writes it: values (list<string>), at (list<u32>), into a 16-byte area.
	vp, vn := lowerStrings(m, []string{"checkout", "payments"})
	ap, abuf := m.alloc(12, 4)
	putU32(abuf, 0, 1)
	putU32(abuf, 4, 0)
	putU32(abuf, 8, 1)
	_, ret := m.alloc(sizeStringColumn, 4)
	putList(ret, 0, vp, vn)
	putList(ret, 8, ap, 3)
	values, at := liftStringColumn(m, ret)
	if !reflect.DeepEqual(values, []string{"checkout", "payments"}) || !reflect.DeepEqual(at, []uint32{1, 0, 1}) {
		t.Errorf("column %q %v", values, at)
	}
	ip, ibuf := m.alloc(16, 8)
	putI64(ibuf, 0, -5)
	putI64(ibuf, 8, 1<<40)
	if got := liftS64s(m, ip, 2); !reflect.DeepEqual(got, []int64{-5, 1 << 40}) {
		t.Errorf("ints %v", got)
	}
	ep, ebuf := m.alloc(3, 1)
	copy(ebuf, []byte{1, 2, 4})
	if got := liftEnums[Action](m, ep, 3); !reflect.DeepEqual(got, []Action{ActionAllow, ActionDeny, ActionUnknown}) {
		t.Errorf("actions %v", got)
	}
	// init's list<tuple<string, string>>: 16 bytes a pair, key at 0, value at 8.
	cp, cbuf := m.alloc(2*sizeConfigPair, 4)
	putString(m, cbuf, 0, "actions")
	putString(m, cbuf, 8, "Deny")
	putString(m, cbuf, 16, "ports")
	putString(m, cbuf, 24, "")
	if got := liftConfig(m, cp, 2); !reflect.DeepEqual(got, [][2]string{{"actions", "Deny"}, {"ports", ""}}) {
		t.Errorf("config %q", got)
	}
	if got := liftStrings(m, 0, 0); len(got) != 0 {
		t.Errorf("empty list")
	}
}

func TestOutcomesSitWhereWitBindgenPutsThem(t *testing.T) {
	m := newFakeMemory()
	sev := SeverityWarn
	outs := []Outcome{
		{Kind: OutcomeKeep},
		{Kind: OutcomeDrop},
		{Kind: OutcomeAnnotate, Annotations: Annotations{
			Attributes: []Attribute{
				{"team", Value{Kind: ValueStr, Str: "payments"}},
				{"bytes", Value{Kind: ValueInt, Int: -12}},
				{"ratio", Value{Kind: ValueFloat, Float: 0.5}},
				{"ok", Value{Kind: ValueBool, Bool: true}},
				{"tags", Value{Kind: ValueStrList, StrList: []string{"a", "b"}}},
			},
			Severity: &sev,
			Body:     &Body{Kind: BodyText, Text: "hello"},
		}},
		{Kind: OutcomeExpand, Outputs: []Output{{Flow: richFlow()}, {Flow: richFlow(), Annotations: Annotations{
			Body: &Body{Kind: BodyStructured, Structured: []Attribute{{"k", Value{Kind: ValueStr, Str: "v"}}}}}}}},
		{Kind: OutcomeError, Error: "bad"},
		{Kind: OutcomeAnnotate, Annotations: Annotations{Body: &Body{Kind: BodyAttributes}}},
	}
	p, n := lowerOutcomes(m, outs)
	if n != 6 || p%4 != 0 {
		t.Fatalf("list (%d, %d)", p, n)
	}
	all := m.bytes(p, n*sizeOutcome)
	o := func(i int) []byte { return all[i*sizeOutcome : (i+1)*sizeOutcome] }
	for i, k := range []OutcomeKind{OutcomeKeep, OutcomeDrop, OutcomeAnnotate, OutcomeExpand, OutcomeError, OutcomeAnnotate} {
		if o(i)[0] != byte(k) {
			t.Errorf("outcome %d tag %d", i, o(i)[0])
		}
	}
	// annotate: attributes list at 4, severity option at 12, body option at 16 (variant tag at 20, payload 24).
	a := o(2)
	if u32(a, 8) != 5 || a[12] != 1 || a[13] != byte(SeverityWarn) || a[16] != 1 || a[20] != byte(BodyText) ||
		m.str(a, 24) != "hello" {
		t.Errorf("annotations layout: % x", a)
	}
	attrs := m.bytes(u32(a, 4), 5*sizeAttribute)
	at := func(i int) []byte { return attrs[i*sizeAttribute : (i+1)*sizeAttribute] }
	if u32(a, 4)%8 != 0 || m.str(at(0), 0) != "team" || at(0)[8] != byte(ValueStr) || m.str(at(0), 16) != "payments" ||
		at(1)[8] != byte(ValueInt) || i64(at(1), 16) != -12 ||
		at(2)[8] != byte(ValueFloat) || math.Float64frombits(uint64(i64(at(2), 16))) != 0.5 ||
		at(3)[8] != byte(ValueBool) || at(3)[16] != 1 ||
		at(4)[8] != byte(ValueStrList) || u32(at(4), 20) != 2 {
		t.Errorf("attribute layout: % x", attrs)
	}
	// expand: list<output> at 4; an output is 232 bytes, its annotations at 200.
	e := o(3)
	if u32(e, 8) != 2 || u32(e, 4)%8 != 0 {
		t.Fatalf("expand list")
	}
	outputs := m.bytes(u32(e, 4), 2*sizeOutput)
	if got := liftFlow(m, outputs[sizeOutput:]); !reflect.DeepEqual(got, richFlow()) {
		t.Errorf("second output's flow")
	}
	ann := outputs[sizeOutput+sizeFlow:]
	if ann[12] != 1 || ann[16] != byte(BodyStructured) || u32(ann, 24) != 1 || ann[8] != 0 {
		t.Errorf("second output's annotations: % x", ann[:sizeAnnotations])
	}
	if m.str(o(4), 4) != "bad" {
		t.Errorf("error string")
	}
	if b := o(5); b[16] != 1 || b[20] != byte(BodyAttributes) || u32(b, 4) != 0 || u32(b, 8) != 0 {
		t.Errorf("body attributes: % x", b)
	}
	if p, n := lowerOutcomes(m, nil); p != 0 || n != 0 {
		t.Errorf("empty outcome list")
	}
}

func TestInitResult(t *testing.T) {
	m := newFakeMemory()
	_, b := m.alloc(sizeInitResult, 4)
	putInitResult(m, b, nil)
	if b[0] != 0 {
		t.Errorf("ok")
	}
	putInitResult(m, b, errString("nope"))
	if b[0] != 1 || m.str(b, 4) != "nope" {
		t.Errorf("err: % x", b)
	}
}

func TestPolicyHitsRoundTripThroughSetters(t *testing.T) {
	m := newFakeMemory()
	hits := richFlow().EnforcedPolicies
	p, n := lowerPolicyHits(m, hits)
	if got := liftPolicyHits(m, p, n); !reflect.DeepEqual(got, hits) {
		t.Errorf("round trip %+v", got)
	}
}
