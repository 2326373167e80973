//go:build !wasip1

package flowgate

// Outside WebAssembly (native tests) Log and CounterAdd go to these hooks.
var (
	LogHook     = func(level Level, message string) {}
	CounterHook = func(name string, delta uint64) {}
)

func hostLog(level Level, message string)      { LogHook(level, message) }
func hostCounterAdd(name string, delta uint64) { CounterHook(name, delta) }
