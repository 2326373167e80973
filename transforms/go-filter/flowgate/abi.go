package flowgate

// The canonical ABI layouts of flowgate:transform@0.2.0 on wasm32 (pointers and lengths are u32), as
// `wit-bindgen c` 0.46.0 lays them out in its generated transformer.c. Lifting copies everything into Go
// values (so the guest memory the host wrote into can be reused at once); lowering allocates through the
// memory it is given. Kept free of build tags so that native tests check every offset with a fake memory.

import (
	"encoding/binary"
	"math"
)

// memory is the guest's linear memory as the codec needs it: a view of [ptr, ptr+n), and allocations that
// stay valid until the caller releases them.
type memory interface {
	bytes(ptr, n uint32) []byte
	alloc(size, align uint32) (ptr uint32, buf []byte)
}

// Sizes (and alignments) of the types that cross.
const (
	sizeString       = 8   // ptr, len (align 4)
	sizeStringColumn = 16  // values: list<string>, at: list<u32>
	sizePolicyHit    = 104 // align 8
	sizeFlow         = 200 // align 8
	sizeAttribute    = 24  // align 8
	sizeAnnotations  = 28  // align 4
	sizeOutput       = 232 // flow + annotations, align 8
	sizeOutcome      = 32  // tag + annotations, align 4
	sizeConfigPair   = 16  // tuple<string, string>, align 4
	sizeInitResult   = 12  // result<_, string>: tag, ptr, len
)

var le = binary.LittleEndian

func u32(b []byte, off int) uint32 { return le.Uint32(b[off:]) }
func i64(b []byte, off int) int64  { return int64(le.Uint64(b[off:])) }

func putU32(b []byte, off int, v uint32) { le.PutUint32(b[off:], v) }
func putI64(b []byte, off int, v int64)  { le.PutUint64(b[off:], uint64(v)) }

// ---- Lifting (host -> guest) --------------------------------------------------------------------------------------

func liftString(m memory, b []byte, off int) string {
	return string(m.bytes(u32(b, off), u32(b, off+4)))
}

func liftStrings(m memory, ptr, n uint32) []string {
	if n == 0 {
		return nil
	}
	raw := m.bytes(ptr, n*sizeString)
	out := make([]string, n)
	for i := range out {
		out[i] = liftString(m, raw, i*sizeString)
	}
	return out
}

func liftU32s(m memory, ptr, n uint32) []uint32 {
	if n == 0 {
		return nil
	}
	raw := m.bytes(ptr, 4*n)
	out := make([]uint32, n)
	for i := range out {
		out[i] = u32(raw, 4*i)
	}
	return out
}

func liftS64s(m memory, ptr, n uint32) []int64 {
	if n == 0 {
		return nil
	}
	raw := m.bytes(ptr, 8*n)
	out := make([]int64, n)
	for i := range out {
		out[i] = i64(raw, 8*i)
	}
	return out
}

func liftEnums[T ~uint8](m memory, ptr, n uint32) []T {
	if n == 0 {
		return nil
	}
	raw := m.bytes(ptr, n)
	out := make([]T, n)
	for i := range out {
		out[i] = T(raw[i])
	}
	return out
}

// liftStringColumn reads a string-column record (16 bytes at ret).
func liftStringColumn(m memory, ret []byte) ([]string, []uint32) {
	return liftStrings(m, u32(ret, 0), u32(ret, 4)), liftU32s(m, u32(ret, 8), u32(ret, 12))
}

func liftPolicyHit(m memory, b []byte) PolicyHit {
	h := PolicyHit{
		Kind:        PolicyKind(b[0]),
		Namespace:   liftString(m, b, 4),
		Name:        liftString(m, b, 12),
		Tier:        liftString(m, b, 20),
		Action:      Action(b[28]),
		PolicyIndex: i64(b, 32),
		RuleIndex:   i64(b, 40),
	}
	if b[48] != 0 { // option<policy-trigger>: the trigger record at 56
		h.Trigger = &PolicyTrigger{
			Kind:        PolicyKind(b[56]),
			Namespace:   liftString(m, b, 60),
			Name:        liftString(m, b, 68),
			Tier:        liftString(m, b, 76),
			Action:      Action(b[84]),
			PolicyIndex: i64(b, 88),
			RuleIndex:   i64(b, 96),
		}
	}
	return h
}

func liftPolicyHits(m memory, ptr, n uint32) []PolicyHit {
	if n == 0 {
		return nil
	}
	raw := m.bytes(ptr, n*sizePolicyHit)
	out := make([]PolicyHit, n)
	for i := range out {
		out[i] = liftPolicyHit(m, raw[i*sizePolicyHit:])
	}
	return out
}

// liftFlow reads a flow record (200 bytes at b).
func liftFlow(m memory, b []byte) Flow {
	return Flow{
		SourceName:              liftString(m, b, 0),
		SourceNamespace:         liftString(m, b, 8),
		SourceType:              EndpointType(b[16]),
		DestName:                liftString(m, b, 20),
		DestNamespace:           liftString(m, b, 28),
		DestType:                EndpointType(b[36]),
		DestPort:                i64(b, 40),
		DestServiceName:         liftString(m, b, 48),
		DestServiceNamespace:    liftString(m, b, 56),
		DestServicePortName:     liftString(m, b, 64),
		DestServicePort:         i64(b, 72),
		Proto:                   liftString(m, b, 80),
		Reporter:                Reporter(b[88]),
		Action:                  Action(b[89]),
		EnforcedPolicies:        liftPolicyHits(m, u32(b, 92), u32(b, 96)),
		PendingPolicies:         liftPolicyHits(m, u32(b, 100), u32(b, 104)),
		StartTime:               i64(b, 112),
		EndTime:                 i64(b, 120),
		SourceLabels:            liftStrings(m, u32(b, 128), u32(b, 132)),
		DestLabels:              liftStrings(m, u32(b, 136), u32(b, 140)),
		PacketsIn:               i64(b, 144),
		PacketsOut:              i64(b, 152),
		BytesIn:                 i64(b, 160),
		BytesOut:                i64(b, 168),
		NumConnectionsStarted:   i64(b, 176),
		NumConnectionsCompleted: i64(b, 184),
		NumConnectionsLive:      i64(b, 192),
	}
}

// liftConfig reads init's list<tuple<string, string>>.
func liftConfig(m memory, ptr, n uint32) [][2]string {
	if n == 0 {
		return nil
	}
	raw := m.bytes(ptr, n*sizeConfigPair)
	out := make([][2]string, n)
	for i := range out {
		out[i] = [2]string{liftString(m, raw, i*sizeConfigPair), liftString(m, raw, i*sizeConfigPair+8)}
	}
	return out
}

// ---- Lowering (guest -> host) -------------------------------------------------------------------------------------

// lowerString copies s into guest memory; the empty string is (0, 0).
func lowerString(m memory, s string) (uint32, uint32) {
	if len(s) == 0 {
		return 0, 0
	}
	p, buf := m.alloc(uint32(len(s)), 1)
	copy(buf, s)
	return p, uint32(len(s))
}

func putString(m memory, b []byte, off int, s string) {
	p, n := lowerString(m, s)
	putU32(b, off, p)
	putU32(b, off+4, n)
}

// lowerStrings writes a list<string>; the empty list is (0, 0) (0 is aligned for every type).
func lowerStrings(m memory, l []string) (uint32, uint32) {
	if len(l) == 0 {
		return 0, 0
	}
	p, buf := m.alloc(uint32(len(l))*sizeString, 4)
	for i, s := range l {
		putString(m, buf, i*sizeString, s)
	}
	return p, uint32(len(l))
}

func putPolicyHit(m memory, b []byte, h *PolicyHit) {
	b[0] = byte(h.Kind)
	putString(m, b, 4, h.Namespace)
	putString(m, b, 12, h.Name)
	putString(m, b, 20, h.Tier)
	b[28] = byte(h.Action)
	putI64(b, 32, h.PolicyIndex)
	putI64(b, 40, h.RuleIndex)
	if t := h.Trigger; t != nil {
		b[48] = 1
		b[56] = byte(t.Kind)
		putString(m, b, 60, t.Namespace)
		putString(m, b, 68, t.Name)
		putString(m, b, 76, t.Tier)
		b[84] = byte(t.Action)
		putI64(b, 88, t.PolicyIndex)
		putI64(b, 96, t.RuleIndex)
	}
}

func lowerPolicyHits(m memory, hits []PolicyHit) (uint32, uint32) {
	if len(hits) == 0 {
		return 0, 0
	}
	p, buf := m.alloc(uint32(len(hits))*sizePolicyHit, 8)
	for i := range hits {
		putPolicyHit(m, buf[i*sizePolicyHit:], &hits[i])
	}
	return p, uint32(len(hits))
}

func putList(b []byte, off int, p, n uint32) {
	putU32(b, off, p)
	putU32(b, off+4, n)
}

// putFlow writes a flow record (200 bytes at b).
func putFlow(m memory, b []byte, f *Flow) {
	putString(m, b, 0, f.SourceName)
	putString(m, b, 8, f.SourceNamespace)
	b[16] = byte(f.SourceType)
	putString(m, b, 20, f.DestName)
	putString(m, b, 28, f.DestNamespace)
	b[36] = byte(f.DestType)
	putI64(b, 40, f.DestPort)
	putString(m, b, 48, f.DestServiceName)
	putString(m, b, 56, f.DestServiceNamespace)
	putString(m, b, 64, f.DestServicePortName)
	putI64(b, 72, f.DestServicePort)
	putString(m, b, 80, f.Proto)
	b[88] = byte(f.Reporter)
	b[89] = byte(f.Action)
	p, n := lowerPolicyHits(m, f.EnforcedPolicies)
	putList(b, 92, p, n)
	p, n = lowerPolicyHits(m, f.PendingPolicies)
	putList(b, 100, p, n)
	putI64(b, 112, f.StartTime)
	putI64(b, 120, f.EndTime)
	p, n = lowerStrings(m, f.SourceLabels)
	putList(b, 128, p, n)
	p, n = lowerStrings(m, f.DestLabels)
	putList(b, 136, p, n)
	for k, v := range []int64{f.PacketsIn, f.PacketsOut, f.BytesIn, f.BytesOut, f.NumConnectionsStarted,
		f.NumConnectionsCompleted, f.NumConnectionsLive} {
		putI64(b, 144+8*k, v)
	}
}

// lowerAttributes writes a list<attribute>: key at 0, value (tag at 8, payload at 16).
func lowerAttributes(m memory, attrs []Attribute) (uint32, uint32) {
	if len(attrs) == 0 {
		return 0, 0
	}
	p, buf := m.alloc(uint32(len(attrs))*sizeAttribute, 8)
	for i := range attrs {
		b, a := buf[i*sizeAttribute:], &attrs[i]
		putString(m, b, 0, a.Key)
		b[8] = byte(a.Value.Kind)
		switch a.Value.Kind {
		case ValueStr:
			putString(m, b, 16, a.Value.Str)
		case ValueInt:
			putI64(b, 16, a.Value.Int)
		case ValueFloat:
			le.PutUint64(b[16:], math.Float64bits(a.Value.Float))
		case ValueBool:
			if a.Value.Bool {
				b[16] = 1
			}
		case ValueStrList:
			lp, ln := lowerStrings(m, a.Value.StrList)
			putList(b, 16, lp, ln)
		default:
			panic("flowgate: bad attribute value kind")
		}
	}
	return p, uint32(len(attrs))
}

// putAnnotations writes an annotations record (28 bytes at b): attributes at 0, option<severity> at 8,
// option<body> at 12 (its body variant at 16, the payload at 20).
func putAnnotations(m memory, b []byte, a *Annotations) {
	p, n := lowerAttributes(m, a.Attributes)
	putList(b, 0, p, n)
	if a.Severity != nil {
		b[8], b[9] = 1, byte(*a.Severity)
	}
	if body := a.Body; body != nil {
		b[12], b[16] = 1, byte(body.Kind)
		switch body.Kind {
		case BodyFlowJSON, BodyAttributes:
		case BodyStructured:
			p, n := lowerAttributes(m, body.Structured)
			putList(b, 20, p, n)
		case BodyText:
			putString(m, b, 20, body.Text)
		default:
			panic("flowgate: bad body kind")
		}
	}
}

// lowerOutcomes writes process's list<outcome>: tag at 0, payload at 4.
func lowerOutcomes(m memory, outs []Outcome) (uint32, uint32) {
	if len(outs) == 0 {
		return 0, 0
	}
	p, buf := m.alloc(uint32(len(outs))*sizeOutcome, 4)
	for i := range outs {
		b, o := buf[i*sizeOutcome:], &outs[i]
		b[0] = byte(o.Kind)
		switch o.Kind {
		case OutcomeKeep, OutcomeDrop:
		case OutcomeAnnotate:
			putAnnotations(m, b[4:], &o.Annotations)
		case OutcomeExpand:
			if len(o.Outputs) > 0 {
				lp, lbuf := m.alloc(uint32(len(o.Outputs))*sizeOutput, 8)
				for k := range o.Outputs {
					ob := lbuf[k*sizeOutput:]
					putFlow(m, ob, &o.Outputs[k].Flow)
					putAnnotations(m, ob[sizeFlow:], &o.Outputs[k].Annotations)
				}
				putList(b, 4, lp, uint32(len(o.Outputs)))
			}
		case OutcomeError:
			putString(m, b, 4, o.Error)
		default:
			panic("flowgate: bad outcome kind")
		}
	}
	return p, uint32(len(outs))
}

// putInitResult writes init's result<_, string> (12 bytes at b).
func putInitResult(m memory, b []byte, err error) {
	for k := range b[:sizeInitResult] {
		b[k] = 0
	}
	if err != nil {
		b[0] = 1
		putString(m, b, 4, err.Error())
	}
}

type errString string

func (e errString) Error() string { return string(e) }
