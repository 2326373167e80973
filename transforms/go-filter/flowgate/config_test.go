package flowgate

import "testing"

func TestConfigReadsValuesAndLists(t *testing.T) {
	c := NewConfig([][2]string{{"namespaces", " a, b ,,c"}, {"rate", "1"}, {"rate", "0.25"}})
	if got := c.List("namespaces"); len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Errorf("list %q", got)
	}
	if c.Get("rate") != "0.25" {
		t.Errorf("the last value wins")
	}
	if v, ok := c.Lookup("absent"); ok || v != "" {
		t.Errorf("absent")
	}
	if c.List("absent") != nil {
		t.Errorf("absent list")
	}
	if err := c.unknownKeys(); err != nil {
		t.Errorf("all read: %v", err)
	}
}

func TestConfigRefusesKeysNeverRead(t *testing.T) {
	c := NewConfig([][2]string{{"actions", "Deny"}, {"drop_namespace", "kube-*"}})
	c.List("actions")
	c.List("drop_namespaces")
	c.Get("ports")
	want := `unknown config key "drop_namespace"; this transform reads: actions, drop_namespaces, ports`
	if err := c.unknownKeys(); err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	c = NewConfig([][2]string{{"b", "1"}, {"a", "2"}, {"b", "3"}, {"x", ""}})
	c.Get("x")
	want = `unknown config keys "a", "b"; this transform reads: x`
	if err := c.unknownKeys(); err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	c = NewConfig([][2]string{{"a", "1"}})
	want = `unknown config key "a"; this transform reads no keys`
	if err := c.unknownKeys(); err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestGlobsMatchWholeNamesWithStarAndQuestionMark(t *testing.T) {
	for _, c := range []struct {
		pattern, text string
		want          bool
	}{
		{"kube-*", "kube-system", true},
		{"kube-*", "kube-", true},
		{"kube-*", "kube", false},
		{"kube-*", "my-kube-system", false},
		{"monitoring", "monitoring-2", false},
		{"*-system", "kube-system", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"?at", "cat", true},
		{"?at", "at", false},
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
		{"ü*", "über", true},
	} {
		if got := NewGlob(c.pattern).Match(c.text); got != c.want {
			t.Errorf("%q ~ %q: %v", c.pattern, c.text, got)
		}
	}
}
