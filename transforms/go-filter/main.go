// `filter`, in Go (mainline toolchain, GOOS=wasip1 GOARCH=wasm -buildmode=c-shared, through package flowgate):
// the same behaviour as transforms/c-filter and transforms/filter (Rust), without the Rust one's sampling.
//
// Config: `actions` (keep only these: Allow,Deny,Pass), `drop_namespaces` (globs against source and destination
// namespace), `ports` (keep only these destination ports). Any other key refuses the component.
//
// Cost: only the columns a decision needs are fetched (`actions` when actions are configured, the two namespace
// columns when globs are, `dest-port` when ports are), and each distinct namespace is matched once per batch.
package main

import (
	"strconv"

	"gofilter/flowgate"
)

type filter struct {
	actions []flowgate.Action
	drop    []flowgate.Glob
	ports   []int64
}

func init() { flowgate.Register(&filter{}) }

func (f *filter) Init(c *flowgate.Config) error {
	*f = filter{}
	for _, a := range c.List("actions") {
		switch a {
		case "Allow":
			f.actions = append(f.actions, flowgate.ActionAllow)
		case "Deny":
			f.actions = append(f.actions, flowgate.ActionDeny)
		case "Pass":
			f.actions = append(f.actions, flowgate.ActionPass)
		default:
			return errorf("actions: " + strconv.Quote(a) + " is not Allow, Deny or Pass")
		}
	}
	for _, g := range c.List("drop_namespaces") {
		f.drop = append(f.drop, flowgate.NewGlob(g))
	}
	for _, p := range c.List("ports") {
		port, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return errorf("ports: not a list of port numbers")
		}
		f.ports = append(f.ports, port)
	}
	flowgate.Log(flowgate.LevelInfo, "go filter ready")
	return nil
}

func (f *filter) matches(namespace string) bool {
	for _, g := range f.drop {
		if g.Match(namespace) {
			return true
		}
	}
	return false
}

func (f *filter) Process(b *flowgate.Batch) {
	drop := make([]bool, b.Len())
	if len(f.drop) > 0 {
		// Each distinct namespace once, then every flow by its index into the column.
		for _, field := range []flowgate.StringField{flowgate.SourceNamespace, flowgate.DestNamespace} {
			col := b.Strings(field)
			hit := make([]bool, len(col.Values))
			for k, v := range col.Values {
				hit[k] = f.matches(v)
			}
			for i, k := range col.At {
				drop[i] = drop[i] || hit[k]
			}
		}
	}
	for i := range drop {
		if !drop[i] && len(f.actions) > 0 {
			drop[i] = !contains(f.actions, b.Action(i))
		}
		if !drop[i] && len(f.ports) > 0 {
			drop[i] = !contains(f.ports, b.DestPort(i))
		}
		if drop[i] {
			b.Drop(i)
		}
	}
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

type errorf string

func (e errorf) Error() string { return string(e) }

func main() {}
