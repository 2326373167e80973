package flowgate_test

import (
	"reflect"
	"testing"

	"gofilter/flowgate"
	"gofilter/flowgate/fake"
)

func sample(i int) flowgate.Flow {
	return flowgate.Flow{
		SourceName:           []string{"checkout-*", "payments-*", "kube-dns-*"}[i%3],
		SourceNamespace:      []string{"checkout", "payments"}[i%2],
		SourceType:           flowgate.EndpointWorkload,
		DestName:             "postgres-*",
		DestNamespace:        "payments",
		DestType:             flowgate.EndpointNetwork,
		DestPort:             []int64{5432, 443}[i%2],
		DestServiceName:      "postgres",
		DestServiceNamespace: "payments",
		DestServicePortName:  "",
		DestServicePort:      5432,
		Proto:                "tcp",
		Reporter:             flowgate.ReporterSrc,
		Action:               flowgate.ActionAllow,
		EnforcedPolicies: []flowgate.PolicyHit{{
			Kind: flowgate.PolicyKindEndOfTier, Tier: "default", Action: flowgate.ActionDeny, RuleIndex: -1,
			Trigger: &flowgate.PolicyTrigger{Kind: flowgate.PolicyKindCalicoNetworkPolicy, Namespace: "payments",
				Name: "allow-checkout", Tier: "default", Action: flowgate.ActionAllow},
		}},
		StartTime:               1_764_970_845 + int64(i),
		EndTime:                 1_764_970_860 + int64(i),
		SourceLabels:            []string{"app=checkout", "pod-template-hash=abc"},
		PacketsIn:               10 + int64(i),
		PacketsOut:              20 + int64(i),
		BytesIn:                 1000 + int64(i),
		BytesOut:                2000 + int64(i),
		NumConnectionsStarted:   1,
		NumConnectionsCompleted: 2,
		NumConnectionsLive:      3,
	}
}

func batchOf(n int) (*flowgate.Batch, *fake.Host) {
	flows := make([]flowgate.Flow, n)
	for i := range flows {
		flows[i] = sample(i)
	}
	h := fake.New(flows...)
	return flowgate.NewBatch(h), h
}

func TestColumnsAreFetchedOnceAndOnlyWhenRead(t *testing.T) {
	b, h := batchOf(6)
	if b.Len() != 6 || h.Calls["len"] != 1 {
		t.Fatalf("len %d, calls %v", b.Len(), h.Calls)
	}
	for pass := 0; pass < 3; pass++ {
		for i := 0; i < 6; i++ {
			if b.SourceNamespace(i) != []string{"checkout", "payments"}[i%2] || b.DestPort(i) != []int64{5432, 443}[i%2] ||
				b.Action(i) != flowgate.ActionAllow {
				t.Fatalf("flow %d read wrong", i)
			}
		}
	}
	want := map[string]int{"len": 1, "strings": 1, "strings:1": 1, "ints": 1, "ints:0": 1, "actions": 1}
	if !reflect.DeepEqual(h.Calls, want) {
		t.Errorf("calls %v, want %v", h.Calls, want)
	}
	col := b.Strings(flowgate.SourceNamespace)
	if len(col.Values) != 2 || len(col.At) != 6 || col.Values[col.At[3]] != "payments" {
		t.Errorf("column %+v", col)
	}
	if h.Calls["strings"] != 1 {
		t.Errorf("the column was fetched again")
	}
}

func TestEveryFieldReadsWhatTheHostHolds(t *testing.T) {
	b, h := batchOf(3)
	for i := 0; i < 3; i++ {
		f := sample(i)
		got := flowgate.Flow{
			SourceName: b.SourceName(i), SourceNamespace: b.SourceNamespace(i), SourceType: b.SourceType(i),
			DestName: b.DestName(i), DestNamespace: b.DestNamespace(i), DestType: b.DestType(i),
			DestPort: b.DestPort(i), DestServiceName: b.DestServiceName(i),
			DestServiceNamespace: b.DestServiceNamespace(i), DestServicePortName: b.DestServicePortName(i),
			DestServicePort: b.DestServicePort(i), Proto: b.Proto(i), Reporter: b.Reporter(i), Action: b.Action(i),
			EnforcedPolicies: b.EnforcedPolicies(i), PendingPolicies: b.PendingPolicies(i),
			StartTime: b.StartTime(i), EndTime: b.EndTime(i), SourceLabels: b.SourceLabels(i),
			DestLabels: b.DestLabels(i), PacketsIn: b.PacketsIn(i), PacketsOut: b.PacketsOut(i),
			BytesIn: b.BytesIn(i), BytesOut: b.BytesOut(i), NumConnectionsStarted: b.NumConnectionsStarted(i),
			NumConnectionsCompleted: b.NumConnectionsCompleted(i), NumConnectionsLive: b.NumConnectionsLive(i),
		}
		if !reflect.DeepEqual(got, f) {
			t.Errorf("flow %d:\n got %+v\nwant %+v", i, got, f)
		}
		if r := b.Record(i); !reflect.DeepEqual(r, f) {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	for f := 0; f < 8; f++ {
		if h.CallsTo("strings", f) != 1 {
			t.Errorf("string field %d: %d calls", f, h.CallsTo("strings", f))
		}
	}
	for f := 0; f < 11; f++ {
		if h.CallsTo("ints", f) != 1 {
			t.Errorf("int field %d: %d calls", f, h.CallsTo("ints", f))
		}
	}
	if h.Calls["actions"] != 1 || h.Calls["reporters"] != 1 || h.Calls["endpoint-types"] != 2 {
		t.Errorf("calls %v", h.Calls)
	}
	// Lists and records: once per flow and field.
	if h.Calls["labels"] != 6 || h.Calls["policies"] != 6 || h.Calls["record"] != 3 {
		t.Errorf("calls %v", h.Calls)
	}
	b.SourceLabels(1)
	b.EnforcedPolicies(1)
	b.Record(1)
	if h.Calls["labels"] != 6 || h.Calls["policies"] != 6 || h.Calls["record"] != 3 {
		t.Errorf("fetched again: %v", h.Calls)
	}
}

func TestSettersCallTheHostAndShowYourChanges(t *testing.T) {
	b, h := batchOf(4)
	// A string set before its column is read: no fetch for that flow; the column then shows it.
	b.SetSourceName(1, "redacted")
	if h.Calls["set-string"] != 1 || h.Changed[1].SourceName != "redacted" {
		t.Fatalf("host not told: %v", h.Calls)
	}
	if b.SourceName(1) != "redacted" || h.Calls["strings"] != 0 {
		t.Errorf("pending change not shown, or fetched")
	}
	if b.SourceName(0) != "checkout-*" || b.SourceName(1) != "redacted" || h.Calls["strings"] != 1 {
		t.Errorf("merge after fetch")
	}
	col := b.Strings(flowgate.SourceName)
	if col.Values[col.At[1]] != "redacted" || col.Values[col.At[2]] != "kube-dns-*" {
		t.Errorf("column %+v", col)
	}
	// ... and after.
	b.SetSourceName(2, "x")
	if b.SourceName(2) != "x" || b.SourceName(3) != "checkout-*" || h.Calls["strings"] != 1 {
		t.Errorf("change after fetch")
	}
	// Numbers and enums.
	b.SetDestPort(3, 8443)
	if b.DestPort(3) != 8443 || h.Calls["ints"] != 0 || h.Changed[3].DestPort != 8443 {
		t.Errorf("pending int")
	}
	if b.DestPort(0) != 5432 || b.DestPort(3) != 8443 || h.Calls["ints"] != 1 {
		t.Errorf("int merge")
	}
	if b.Action(0) != flowgate.ActionAllow {
		t.Fatal()
	}
	b.SetAction(0, flowgate.ActionDeny)
	if b.Action(0) != flowgate.ActionDeny || b.Action(1) != flowgate.ActionAllow || h.Calls["actions"] != 1 {
		t.Errorf("action")
	}
	b.SetReporter(2, flowgate.ReporterDst)
	b.SetDestType(1, flowgate.EndpointHost)
	if b.Reporter(2) != flowgate.ReporterDst || b.Reporter(1) != flowgate.ReporterSrc ||
		b.DestType(1) != flowgate.EndpointHost || b.SourceType(1) != flowgate.EndpointWorkload {
		t.Errorf("enums")
	}
	if h.Changed[2].Reporter != flowgate.ReporterDst || h.Changed[1].DestType != flowgate.EndpointHost {
		t.Errorf("host not told")
	}
	// Lists.
	labels := []string{"app=payments"}
	b.SetSourceLabels(0, labels)
	labels[0] = "mutated by the caller"
	if got := b.SourceLabels(0); len(got) != 1 || got[0] != "app=payments" || h.Calls["labels"] != 0 {
		t.Errorf("labels %v", got)
	}
	hits := b.EnforcedPolicies(2)
	b.SetPendingPolicies(2, hits)
	if got := b.PendingPolicies(2); len(got) != 1 || got[0].Trigger.Name != "allow-checkout" || h.Calls["policies"] != 1 {
		t.Errorf("policies %v", got)
	}
	b.SetEnforcedPolicies(2, nil)
	if len(b.EnforcedPolicies(2)) != 0 || len(h.Changed[2].EnforcedPolicies) != 0 {
		t.Errorf("cleared policies")
	}
	// The record is the flow as it entered.
	if r := b.Record(3); r.DestPort != 443 || r.SourceName != "checkout-*" {
		t.Errorf("record %+v", r)
	}
}

func TestOutcomes(t *testing.T) {
	b, _ := batchOf(5)
	b.Drop(1)
	b.Fail(2, "bad port")
	b.Annotate(3).Str("team", "payments").Int("bytes", 12).SetSeverity(flowgate.SeverityWarn).
		SetBody(flowgate.Body{Kind: flowgate.BodyText, Text: "x"})
	b.Annotate(3).Bool("again", true)
	b.Annotate(4).Str("k", "v")
	b.Drop(4)
	out := b.Outcomes()
	kinds := []flowgate.OutcomeKind{flowgate.OutcomeKeep, flowgate.OutcomeDrop, flowgate.OutcomeError,
		flowgate.OutcomeAnnotate, flowgate.OutcomeDrop}
	for i, k := range kinds {
		if out[i].Kind != k {
			t.Errorf("flow %d: %v, want %v", i, out[i].Kind, k)
		}
	}
	if out[2].Error != "bad port" || len(out[3].Annotations.Attributes) != 3 || *out[3].Annotations.Severity != flowgate.SeverityWarn {
		t.Errorf("outcomes %+v", out)
	}
	b.Keep(1)
	b.Expand(2, flowgate.Output{Flow: sample(0)}, flowgate.Output{Flow: sample(1)})
	if out[1].Kind != flowgate.OutcomeKeep || out[2].Kind != flowgate.OutcomeExpand || len(out[2].Outputs) != 2 {
		t.Errorf("keep/expand %+v", out[1:3])
	}
	defer func() {
		if recover() == nil {
			t.Error("an index out of range does not panic")
		}
	}()
	b.SourceName(5)
}
