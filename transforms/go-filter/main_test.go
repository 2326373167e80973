//go:build !wasip1

// Native only: flowgate.LogHook exists outside WebAssembly.
package main

import (
	"testing"

	"gofilter/flowgate"
	"gofilter/flowgate/fake"
)

func sample() flowgate.Flow {
	return flowgate.Flow{
		SourceName: "checkout-*", SourceNamespace: "checkout", DestName: "postgres-*", DestNamespace: "payments",
		DestPort: 5432, Proto: "tcp", Action: flowgate.ActionAllow, Reporter: flowgate.ReporterSrc,
	}
}

func with(edit func(*flowgate.Flow)) flowgate.Flow {
	f := sample()
	edit(&f)
	return f
}

func newFilter(t *testing.T, pairs ...[2]string) *filter {
	t.Helper()
	f := &filter{}
	if err := flowgate.RunInit(f, pairs); err != nil {
		t.Fatalf("init: %v", err)
	}
	return f
}

// kept runs the filter over flows and reports which were kept.
func kept(f *filter, flows ...flowgate.Flow) ([]bool, *fake.Host) {
	h := fake.New(flows...)
	out := flowgate.RunProcess(f, h)
	k := make([]bool, len(out))
	for i, o := range out {
		k[i] = o.Kind == flowgate.OutcomeKeep
	}
	return k, h
}

func expect(t *testing.T, got []bool, want ...bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d outcomes, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("flow %d: kept=%v, want %v", i, got[i], want[i])
		}
	}
}

func TestEachOptionKeepsWhatItNamesAndDropsTheRest(t *testing.T) {
	deny := func(f *flowgate.Flow) { f.Action = flowgate.ActionDeny }
	pass := func(f *flowgate.Flow) { f.Action = flowgate.ActionPass }
	// No option: everything kept, nothing fetched but the length.
	k, h := kept(newFilter(t), sample(), with(deny), with(pass))
	expect(t, k, true, true, true)
	if len(h.Calls) != 1 || h.Calls["len"] != 1 {
		t.Errorf("calls %v", h.Calls)
	}
	// actions: only the listed ones.
	k, _ = kept(newFilter(t, [2]string{"actions", "Deny,Pass"}), with(deny), with(pass), sample())
	expect(t, k, true, true, false)
	// drop_namespaces: a match on either side drops; globs match whole names.
	f := newFilter(t, [2]string{"drop_namespaces", "kube-*,monitoring"})
	k, _ = kept(f, sample(),
		with(func(f *flowgate.Flow) { f.SourceNamespace = "kube-system" }),
		with(func(f *flowgate.Flow) { f.DestNamespace = "monitoring" }),
		with(func(f *flowgate.Flow) { f.DestNamespace = "monitoring-2" }))
	expect(t, k, true, false, false, true)
	// ports: only the listed destination ports.
	k, _ = kept(newFilter(t, [2]string{"ports", "443,5432"}), sample(),
		with(func(f *flowgate.Flow) { f.DestPort = 443 }), with(func(f *flowgate.Flow) { f.DestPort = 80 }))
	expect(t, k, true, true, false)
}

// The configuration of the host test that compares the filters in every language.
func TestTheAgreementConfigFetchesOnlyWhatItNeeds(t *testing.T) {
	f := newFilter(t, [2]string{"actions", "Deny"}, [2]string{"drop_namespaces", "kube-*"})
	var flows []flowgate.Flow
	for i := 0; i < 300; i++ {
		fl := sample()
		fl.Action = flowgate.Action(1 + i%3)
		fl.SourceNamespace = []string{"checkout", "kube-system", "payments"}[i%3]
		fl.DestNamespace = []string{"payments", "kube-dns", "checkout", "monitoring"}[i%4]
		flows = append(flows, fl)
	}
	k, h := kept(f, flows...)
	for i, fl := range flows {
		want := fl.Action == flowgate.ActionDeny && fl.SourceNamespace != "kube-system" && fl.DestNamespace != "kube-dns"
		if k[i] != want {
			t.Fatalf("flow %d (%v %s -> %s): kept=%v", i, fl.Action, fl.SourceNamespace, fl.DestNamespace, k[i])
		}
	}
	want := map[string]int{"len": 1, "actions": 1, "strings": 2, "strings:1": 1, "strings:3": 1}
	if len(h.Calls) != len(want) {
		t.Errorf("calls %v, want %v", h.Calls, want)
	}
	for name, n := range want {
		if h.Calls[name] != n {
			t.Errorf("%s: %d calls, want %d", name, h.Calls[name], n)
		}
	}
}

func TestBadConfigIsRefusedWithTheSameMessagesAsTheCFilter(t *testing.T) {
	for _, c := range []struct {
		pairs [][2]string
		want  string
	}{
		{[][2]string{{"actions", "Deny,Block"}}, `actions: "Block" is not Allow, Deny or Pass`},
		{[][2]string{{"ports", "443,https"}}, "ports: not a list of port numbers"},
		{[][2]string{{"actions", "Deny"}, {"drop_namespace", "kube-*"}},
			`unknown config key "drop_namespace"; this transform reads: actions, drop_namespaces, ports`},
		{[][2]string{{"port", "1"}, {"allow_sample_rate", "0.5"}, {"port", "2"}},
			`unknown config keys "allow_sample_rate", "port"; this transform reads: actions, drop_namespaces, ports`},
	} {
		err := flowgate.RunInit(&filter{}, c.pairs)
		if err == nil || err.Error() != c.want {
			t.Errorf("%v: got %v, want %q", c.pairs, err, c.want)
		}
	}
	var logged string
	flowgate.LogHook = func(_ flowgate.Level, m string) { logged = m }
	defer func() { flowgate.LogHook = func(flowgate.Level, string) {} }()
	if err := flowgate.RunInit(&filter{}, [][2]string{{"actions", " Deny , Pass,,"}, {"ports", "443"}}); err != nil {
		t.Fatal(err)
	}
	if logged != "go filter ready" {
		t.Errorf("logged %q", logged)
	}
}
