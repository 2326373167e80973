//go:build wasip1

package flowgate

// The component's core module glue for mainline Go (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared): the
// canonical ABI imports and exports of flowgate:transform@0.2.0 written by hand with go:wasmimport and
// go:wasmexport, which take and return scalars only. Layouts are in abi.go.
//
// Memory the host writes into (cabi_realloc). The host calls cabi_realloc to place what it returns (columns,
// lists, records) and init's config in our memory, re-entering Go in the middle of an import call. Go's
// collector knows nothing of what the host writes there, so nothing the host writes lives on its own in the
// Go heap: cabi_realloc bumps through `scratch`, one Go slice referenced from a global (so never freed, and
// never moved: Go's collector does not move objects). Everything is copied into Go values as soon as an
// import returns, and the next import (or export) starts the bump again from zero. Before each import, scratch
// is grown in ordinary Go code to a generous bound for the result (a string column of n flows, say);
// should a result still not fit, cabi_realloc switches to a scratch twice as large, keeping the full one
// referenced until the next reset.
//
// The WASI preview1 adapter also calls cabi_realloc, twice and for good: 64 KiB for its state and 64 KiB for
// its stack, on its first use, which comes during `_initialize` (the Go runtime asks for the time and random
// bytes before any Go heap exists). Those allocations come from `permanent`, a static array in the data
// segment, never reused. Which is which: cabi_realloc serves scratch only while `hostWrites` is set (between
// exports, when the host places init's arguments, and inside our own imports); at any other time (runtime
// start, or Go code calling WASI, i.e. the adapter) it serves `permanent`.
//
// What we return (the outcome list, init's error) is allocated in the Go heap and referenced from `keep`
// until the post-return function (cabi_post_…) or the next call releases it.

import (
	"unsafe"
)

// ---- Imports ------------------------------------------------------------------------------------------------------

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.len
func importLen(self int32) int32

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.strings
func importStrings(self, field int32, ret uint32)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.ints
func importInts(self, field int32, ret uint32)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.actions
func importActions(self int32, ret uint32)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.reporters
func importReporters(self int32, ret uint32)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.endpoint-types
func importEndpointTypes(self, field int32, ret uint32)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.labels
func importLabels(self, flow, field int32, ret uint32)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.policies
func importPolicies(self, flow, field int32, ret uint32)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.record
func importRecord(self, flow int32, ret uint32)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.set-string
func importSetString(self, flow, field int32, ptr, n uint32)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.set-int
func importSetInt(self, flow, field int32, value int64)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.set-action
func importSetAction(self, flow, value int32)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.set-reporter
func importSetReporter(self, flow, value int32)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.set-endpoint-type
func importSetEndpointType(self, flow, field, value int32)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.set-labels
func importSetLabels(self, flow, field int32, ptr, n uint32)

//go:wasmimport flowgate:transform/types@0.2.0 [method]batch.set-policies
func importSetPolicies(self, flow, field int32, ptr, n uint32)

//go:wasmimport flowgate:transform/types@0.2.0 [resource-drop]batch
func importDropBatch(self int32)

//go:wasmimport flowgate:transform/host@0.2.0 log
func importLog(level int32, ptr, n uint32)

//go:wasmimport flowgate:transform/host@0.2.0 counter-add
func importCounterAdd(ptr, n uint32, delta int64)

// ---- Memory ---------------------------------------------------------------------------------------------------------

// The adapter's two 64 KiB blocks, with room for alignment and a spare.
const permanentSize = 4 << 16

var (
	permanent      [permanentSize]byte
	permanentTop   uint32
	permanentExtra [][]uint64 // should the adapter ever ask for more once Go is running

	scratch    []uint64
	scratchTop uint32
	overflow   [][]uint64

	// hostWrites: the host, not the adapter, is what calls cabi_realloc now.
	hostWrites bool

	keep [][]uint64 // what we return, until post-return

	// Return areas: globals, whose addresses never change.
	importRet  [sizeFlow / 8]uint64
	exportRet  [2]uint64
	scratchMin = uint32(1 << 20)
)

//go:wasmimport wasi_snapshot_preview1 random_get
func wasiRandomGet(buf unsafe.Pointer, n uint32) uint32

func init() {
	scratch = make([]uint64, scratchMin/8)
	// The runtime has used WASI by now (random bytes for its seeds), so the adapter holds its two blocks;
	// one more call makes sure of it before cabi_realloc starts serving the host from scratch.
	var b [8]byte
	wasiRandomGet(unsafe.Pointer(&b[0]), uint32(len(b)))
	hostWrites = true // from now on, between exports, only the host calls cabi_realloc (init's config)
}

func addr(p unsafe.Pointer) uint32 { return uint32(uintptr(p)) }

func alignUp(p, align uint32) uint32 { return (p + align - 1) &^ (align - 1) }

//go:wasmexport cabi_realloc
func cabiRealloc(old, oldSize, align, size uint32) uint32 {
	if size == 0 {
		return align
	}
	var p uint32
	if hostWrites {
		p = scratchAlloc(align, size)
		if p == 0 {
			p = growScratch(align, size)
		}
	} else {
		p = permanentAlloc(align, size)
		if p == 0 {
			p = heapAlloc(&permanentExtra, size)
		}
	}
	if old != 0 && oldSize != 0 {
		n := min(oldSize, size)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(uintptr(p))), n), unsafe.Slice((*byte)(unsafe.Pointer(uintptr(old))), n))
	}
	return p
}

// scratchAlloc bumps through scratch; 0 when it is full.
//
//go:nosplit
func scratchAlloc(align, size uint32) uint32 {
	base := addr(unsafe.Pointer(unsafe.SliceData(scratch)))
	p := alignUp(base+scratchTop, align)
	if p+size > base+uint32(len(scratch))*8 {
		return 0
	}
	scratchTop = p + size - base
	return p
}

// permanentAlloc bumps through the static array; it runs before the Go heap exists, so it allocates nothing.
//
//go:nosplit
func permanentAlloc(align, size uint32) uint32 {
	base := addr(unsafe.Pointer(&permanent[0]))
	p := alignUp(base+permanentTop, align)
	if p+size > base+permanentSize {
		return 0
	}
	permanentTop = p + size - base
	return p
}

// growScratch, when a result outgrows the estimate: a scratch twice as large (the full one is kept alive in
// overflow until the next reset, as the host may still be writing into it). A Go allocation in the middle of an
// import; the collector may run then, which Go's wasmexport supports (abi_test.mjs exercises it).
func growScratch(align, size uint32) uint32 {
	overflow = append(overflow, scratch)
	scratch = make([]uint64, max(2*len(scratch), int(alignUp(size+align, 8)/8)))
	scratchTop = 0
	return scratchAlloc(align, size)
}

func heapAlloc(into *[][]uint64, size uint32) uint32 {
	buf := make([]uint64, (size+7)/8)
	*into = append(*into, buf)
	return addr(unsafe.Pointer(&buf[0]))
}

// resetScratch forgets what the host wrote (already copied into Go values) and makes room for at least need.
func resetScratch(need uint32) {
	scratchTop, overflow = 0, nil
	if need = max(need, scratchMin); uint32(len(scratch))*8 < need {
		scratch = make([]uint64, alignUp(need, 8)/8)
	}
}

type wasmMemory struct{}

func (wasmMemory) bytes(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), n)
}

func (wasmMemory) alloc(size, align uint32) (uint32, []byte) {
	buf := make([]uint64, (size+7)/8) // 8-aligned, zeroed
	keep = append(keep, buf)
	return addr(unsafe.Pointer(&buf[0])), unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), size)
}

var mem wasmMemory

func retArea() (uint32, []byte) {
	return addr(unsafe.Pointer(&importRet)), unsafe.Slice((*byte)(unsafe.Pointer(&importRet)), len(importRet)*8)
}

// call runs one import whose result the host writes through cabi_realloc, with room for need bytes.
func call(need uint32, f func(ret uint32)) []byte {
	resetScratch(need)
	ret, view := retArea()
	hostWrites = true
	f(ret)
	hostWrites = false
	return view
}

// ---- The batch, across the canonical ABI -------------------------------------------------------------------------------

type wasmHost struct {
	self int32
	n    uint32
}

// Generous bounds for what a call returns: a string column of n flows with every value distinct and long.
func (h *wasmHost) columnNeed() uint32 { return 288*h.n + 64<<10 }

func (h *wasmHost) Len() int {
	h.n = uint32(importLen(h.self))
	return int(h.n)
}

func (h *wasmHost) Strings(field StringField) ([]string, []uint32) {
	ret := call(h.columnNeed(), func(ret uint32) { importStrings(h.self, int32(field), ret) })
	return liftStringColumn(mem, ret)
}

func (h *wasmHost) Ints(field IntField) []int64 {
	ret := call(8*h.n, func(ret uint32) { importInts(h.self, int32(field), ret) })
	return liftS64s(mem, u32(ret, 0), u32(ret, 4))
}

func (h *wasmHost) Actions() []Action {
	ret := call(h.n, func(ret uint32) { importActions(h.self, ret) })
	return liftEnums[Action](mem, u32(ret, 0), u32(ret, 4))
}

func (h *wasmHost) Reporters() []Reporter {
	ret := call(h.n, func(ret uint32) { importReporters(h.self, ret) })
	return liftEnums[Reporter](mem, u32(ret, 0), u32(ret, 4))
}

func (h *wasmHost) EndpointTypes(field EndpointField) []EndpointType {
	ret := call(h.n, func(ret uint32) { importEndpointTypes(h.self, int32(field), ret) })
	return liftEnums[EndpointType](mem, u32(ret, 0), u32(ret, 4))
}

func (h *wasmHost) Labels(flow int, field LabelsField) []string {
	ret := call(0, func(ret uint32) { importLabels(h.self, int32(flow), int32(field), ret) })
	return liftStrings(mem, u32(ret, 0), u32(ret, 4))
}

func (h *wasmHost) Policies(flow int, field PoliciesField) []PolicyHit {
	ret := call(0, func(ret uint32) { importPolicies(h.self, int32(flow), int32(field), ret) })
	return liftPolicyHits(mem, u32(ret, 0), u32(ret, 4))
}

func (h *wasmHost) Record(flow int) Flow {
	ret := call(0, func(ret uint32) { importRecord(h.self, int32(flow), ret) })
	return liftFlow(mem, ret)
}

// lowering runs f with what it lowers kept alive for the call only (the host copies arguments during it).
func lowering(f func()) {
	mark := len(keep)
	f()
	clear(keep[mark:])
	keep = keep[:mark]
}

func (h *wasmHost) SetString(flow int, field StringField, value string) {
	lowering(func() {
		p, n := lowerString(mem, value)
		importSetString(h.self, int32(flow), int32(field), p, n)
	})
}

func (h *wasmHost) SetInt(flow int, field IntField, value int64) {
	importSetInt(h.self, int32(flow), int32(field), value)
}

func (h *wasmHost) SetAction(flow int, value Action) {
	importSetAction(h.self, int32(flow), int32(value))
}

func (h *wasmHost) SetReporter(flow int, value Reporter) {
	importSetReporter(h.self, int32(flow), int32(value))
}

func (h *wasmHost) SetEndpointType(flow int, field EndpointField, value EndpointType) {
	importSetEndpointType(h.self, int32(flow), int32(field), int32(value))
}

func (h *wasmHost) SetLabels(flow int, field LabelsField, value []string) {
	lowering(func() {
		p, n := lowerStrings(mem, value)
		importSetLabels(h.self, int32(flow), int32(field), p, n)
	})
}

func (h *wasmHost) SetPolicies(flow int, field PoliciesField, value []PolicyHit) {
	lowering(func() {
		p, n := lowerPolicyHits(mem, value)
		importSetPolicies(h.self, int32(flow), int32(field), p, n)
	})
}

func hostLog(level Level, message string) {
	lowering(func() {
		p, n := lowerString(mem, message)
		importLog(int32(level), p, n)
	})
}

func hostCounterAdd(name string, delta uint64) {
	lowering(func() {
		p, n := lowerString(mem, name)
		importCounterAdd(p, n, int64(delta))
	})
}

// ---- Exports ------------------------------------------------------------------------------------------------------

func enter() {
	hostWrites = false
	clear(keep)
	keep = keep[:0]
}

func leave() {
	resetScratch(0)
	hostWrites = true
}

func exportArea() (uint32, []byte) {
	return addr(unsafe.Pointer(&exportRet)), unsafe.Slice((*byte)(unsafe.Pointer(&exportRet)), len(exportRet)*8)
}

//go:wasmexport flowgate:transform/transform@0.2.0#init
func exportInit(ptr, n uint32) uint32 {
	enter()
	pairs := liftConfig(mem, ptr, n) // copied out of scratch before anything reuses it
	resetScratch(0)
	var err error
	if registered == nil {
		err = errString("flowgate: no transform registered (call flowgate.Register from an init function)")
	} else {
		err = RunInit(registered, pairs)
	}
	ret, area := exportArea()
	putInitResult(mem, area, err)
	leave()
	return ret
}

//go:wasmexport flowgate:transform/transform@0.2.0#process
func exportProcess(self int32) uint32 {
	enter()
	outcomes := RunProcess(registered, &wasmHost{self: self})
	// The borrow must be dropped before returning, or the host fails the call ("borrow handles still remain").
	importDropBatch(self)
	p, n := lowerOutcomes(mem, outcomes)
	ret, area := exportArea()
	putList(area, 0, p, n)
	leave()
	return ret
}

//go:wasmexport cabi_post_flowgate:transform/transform@0.2.0#init
func postInit(uint32) { release() }

//go:wasmexport cabi_post_flowgate:transform/transform@0.2.0#process
func postProcess(uint32) { release() }

func release() {
	clear(keep)
	keep = keep[:0]
}
