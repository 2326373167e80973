package flowgate

// Batch is one batch of flows as a transform sees it. The first read of a field fetches that field for every
// flow in one host call (a column) and caches it for the rest of the call; label and policy lists and whole
// records are fetched per flow on first read and cached the same way. Setters call the host's typed setter at
// once and update the cache, so getters show the transform's own changes (Record excepted: it is the flow as
// it entered). Every flow is kept unless Drop, Fail, Annotate or Expand say otherwise.
//
// A Batch is valid only during Process: do not keep it, or anything from it that the docs call a view.
type Batch struct {
	host     Host
	n        int
	strings  [numStringFields]*stringColumn
	ints     [numIntFields]*numberColumn
	enums    [4]*numberColumn // action, reporter, source-type, dest-type
	labels   [2]map[int][]string
	policies [2]map[int][]PolicyHit
	records  map[int]*Flow
	outcomes []Outcome
}

// StringColumn is one string field of every flow: flow i's value is Values[At[i]]. Values holds each distinct
// value once (your own changes appended), so a decision can be made once per value. A view: do not modify, and
// call Strings again after setting that field (the setter appends to Values and changes At).
type StringColumn struct {
	Values []string
	At     []uint32
}

type stringColumn struct {
	fetched bool
	col     StringColumn
	pending map[int]string // set before the column was fetched
}

type numberColumn struct {
	fetched bool
	values  []int64
	pending map[int]int64
}

const (
	enumAction = iota
	enumReporter
	enumSourceType
	enumDestType
)

// NewBatch wraps a host batch (one `len` call). Components get theirs from the runtime; tests use package fake.
func NewBatch(h Host) *Batch {
	n := h.Len()
	return &Batch{host: h, n: n, outcomes: make([]Outcome, n)}
}

// Len is the number of flows.
func (b *Batch) Len() int { return b.n }

// Outcomes is one outcome per flow, as decided so far.
func (b *Batch) Outcomes() []Outcome { return b.outcomes }

func (b *Batch) check(i int) {
	if i < 0 || i >= b.n {
		panic("flowgate: flow index out of range")
	}
}

// ---- Strings ----------------------------------------------------------------------------------------------------

func (b *Batch) stringColumn(field StringField) *stringColumn {
	if field >= numStringFields {
		panic("flowgate: no such string field")
	}
	c := b.strings[field]
	if c == nil {
		c = &stringColumn{}
		b.strings[field] = c
	}
	return c
}

func (b *Batch) fetchStrings(field StringField) *stringColumn {
	c := b.stringColumn(field)
	if c.fetched {
		return c
	}
	values, at := b.host.Strings(field)
	if len(at) != b.n {
		panic("flowgate: host returned a column of the wrong length")
	}
	c.col = StringColumn{Values: values, At: at}
	for i, v := range c.pending {
		c.col.At[i] = uint32(len(c.col.Values))
		c.col.Values = append(c.col.Values, v)
	}
	c.pending = nil
	c.fetched = true
	return c
}

// Strings is one string field of every flow (fetched once per batch).
func (b *Batch) Strings(field StringField) StringColumn { return b.fetchStrings(field).col }

// String is flow i's string field.
func (b *Batch) String(field StringField, i int) string {
	b.check(i)
	if c := b.stringColumn(field); !c.fetched {
		if v, ok := c.pending[i]; ok {
			return v
		}
	}
	c := b.fetchStrings(field)
	return c.col.Values[c.col.At[i]]
}

// SetString changes flow i's string field.
func (b *Batch) SetString(field StringField, i int, value string) {
	b.check(i)
	c := b.stringColumn(field)
	b.host.SetString(i, field, value)
	if c.fetched {
		c.col.At[i] = uint32(len(c.col.Values))
		c.col.Values = append(c.col.Values, value)
		return
	}
	if c.pending == nil {
		c.pending = map[int]string{}
	}
	c.pending[i] = value
}

// ---- Numbers and enums ------------------------------------------------------------------------------------------

// Which host method fills a number column.
const (
	fetchInts = iota
	fetchActions
	fetchReporters
	fetchEndpointTypes
)

func (b *Batch) fetchNumbers(kind, field int) []int64 {
	switch kind {
	case fetchInts:
		return b.host.Ints(IntField(field))
	case fetchActions:
		return widen(b.host.Actions())
	case fetchReporters:
		return widen(b.host.Reporters())
	default:
		return widen(b.host.EndpointTypes(EndpointField(field)))
	}
}

func (b *Batch) number(slot **numberColumn, kind, field, i int) int64 {
	b.check(i)
	c := *slot
	if c == nil {
		c = &numberColumn{}
		*slot = c
	}
	if !c.fetched {
		if v, ok := c.pending[i]; ok {
			return v
		}
		values := b.fetchNumbers(kind, field)
		if len(values) != b.n {
			panic("flowgate: host returned a column of the wrong length")
		}
		for j, v := range c.pending {
			values[j] = v
		}
		c.values, c.pending, c.fetched = values, nil, true
	}
	return c.values[i]
}

func (b *Batch) setNumber(slot **numberColumn, i int, v int64) {
	c := *slot
	if c == nil {
		c = &numberColumn{}
		*slot = c
	}
	if c.fetched {
		c.values[i] = v
		return
	}
	if c.pending == nil {
		c.pending = map[int]int64{}
	}
	c.pending[i] = v
}

func widen[T ~uint8](in []T) []int64 {
	out := make([]int64, len(in))
	for i, v := range in {
		out[i] = int64(v)
	}
	return out
}

// Int is flow i's integer field.
func (b *Batch) Int(field IntField, i int) int64 {
	if field >= numIntFields {
		panic("flowgate: no such integer field")
	}
	return b.number(&b.ints[field], fetchInts, int(field), i)
}

// SetInt changes flow i's integer field.
func (b *Batch) SetInt(field IntField, i int, value int64) {
	b.check(i)
	if field >= numIntFields {
		panic("flowgate: no such integer field")
	}
	b.host.SetInt(i, field, value)
	b.setNumber(&b.ints[field], i, value)
}

// Action is flow i's action.
func (b *Batch) Action(i int) Action {
	return Action(b.number(&b.enums[enumAction], fetchActions, 0, i))
}

// SetAction changes flow i's action.
func (b *Batch) SetAction(i int, value Action) {
	b.check(i)
	b.host.SetAction(i, value)
	b.setNumber(&b.enums[enumAction], i, int64(value))
}

// Reporter is flow i's reporter.
func (b *Batch) Reporter(i int) Reporter {
	return Reporter(b.number(&b.enums[enumReporter], fetchReporters, 0, i))
}

// SetReporter changes flow i's reporter.
func (b *Batch) SetReporter(i int, value Reporter) {
	b.check(i)
	b.host.SetReporter(i, value)
	b.setNumber(&b.enums[enumReporter], i, int64(value))
}

// EndpointType is flow i's source or destination type.
func (b *Batch) EndpointType(field EndpointField, i int) EndpointType {
	if field > DestType {
		panic("flowgate: no such endpoint field")
	}
	return EndpointType(b.number(&b.enums[enumSourceType+int(field)], fetchEndpointTypes, int(field), i))
}

// SetEndpointType changes flow i's source or destination type.
func (b *Batch) SetEndpointType(field EndpointField, i int, value EndpointType) {
	b.check(i)
	if field > DestType {
		panic("flowgate: no such endpoint field")
	}
	b.host.SetEndpointType(i, field, value)
	b.setNumber(&b.enums[enumSourceType+int(field)], i, int64(value))
}

// ---- Per-flow lists and records -----------------------------------------------------------------------------------

// Labels is flow i's label list (`key=value`), fetched once per flow. A view: do not modify.
func (b *Batch) Labels(field LabelsField, i int) []string {
	b.check(i)
	if field > DestLabels {
		panic("flowgate: no such labels field")
	}
	if b.labels[field] == nil {
		b.labels[field] = map[int][]string{}
	}
	l, ok := b.labels[field][i]
	if !ok {
		l = b.host.Labels(i, field)
		b.labels[field][i] = l
	}
	return l
}

// SetLabels replaces flow i's label list (copied).
func (b *Batch) SetLabels(field LabelsField, i int, labels []string) {
	b.check(i)
	if field > DestLabels {
		panic("flowgate: no such labels field")
	}
	b.host.SetLabels(i, field, labels)
	if b.labels[field] == nil {
		b.labels[field] = map[int][]string{}
	}
	b.labels[field][i] = append([]string(nil), labels...)
}

// Policies is flow i's policy list, fetched once per flow. A view: do not modify.
func (b *Batch) Policies(field PoliciesField, i int) []PolicyHit {
	b.check(i)
	if field > PendingPolicies {
		panic("flowgate: no such policies field")
	}
	if b.policies[field] == nil {
		b.policies[field] = map[int][]PolicyHit{}
	}
	l, ok := b.policies[field][i]
	if !ok {
		l = b.host.Policies(i, field)
		b.policies[field][i] = l
	}
	return l
}

// SetPolicies replaces flow i's policy list (copied). An unknown kind or action keeps the host's number of the
// hit at the same position.
func (b *Batch) SetPolicies(field PoliciesField, i int, hits []PolicyHit) {
	b.check(i)
	if field > PendingPolicies {
		panic("flowgate: no such policies field")
	}
	b.host.SetPolicies(i, field, hits)
	if b.policies[field] == nil {
		b.policies[field] = map[int][]PolicyHit{}
	}
	b.policies[field][i] = append([]PolicyHit(nil), hits...)
}

// Record is flow i as a whole, as it entered this transform (not showing your changes); fetched once per flow.
func (b *Batch) Record(i int) Flow {
	b.check(i)
	if b.records == nil {
		b.records = map[int]*Flow{}
	}
	f, ok := b.records[i]
	if !ok {
		r := b.host.Record(i)
		f = &r
		b.records[i] = f
	}
	return *f
}

// ---- One getter and setter per field of the WIT flow record ---------------------------------------------------------

func (b *Batch) SourceName(i int) string                  { return b.String(SourceName, i) }
func (b *Batch) SourceNamespace(i int) string             { return b.String(SourceNamespace, i) }
func (b *Batch) SourceType(i int) EndpointType            { return b.EndpointType(SourceType, i) }
func (b *Batch) DestName(i int) string                    { return b.String(DestName, i) }
func (b *Batch) DestNamespace(i int) string               { return b.String(DestNamespace, i) }
func (b *Batch) DestType(i int) EndpointType              { return b.EndpointType(DestType, i) }
func (b *Batch) DestPort(i int) int64                     { return b.Int(DestPort, i) }
func (b *Batch) DestServiceName(i int) string             { return b.String(DestServiceName, i) }
func (b *Batch) DestServiceNamespace(i int) string        { return b.String(DestServiceNamespace, i) }
func (b *Batch) DestServicePortName(i int) string         { return b.String(DestServicePortName, i) }
func (b *Batch) DestServicePort(i int) int64              { return b.Int(DestServicePort, i) }
func (b *Batch) Proto(i int) string                       { return b.String(Proto, i) }
func (b *Batch) EnforcedPolicies(i int) []PolicyHit       { return b.Policies(EnforcedPolicies, i) }
func (b *Batch) PendingPolicies(i int) []PolicyHit        { return b.Policies(PendingPolicies, i) }
func (b *Batch) StartTime(i int) int64                    { return b.Int(StartTime, i) }
func (b *Batch) EndTime(i int) int64                      { return b.Int(EndTime, i) }
func (b *Batch) SourceLabels(i int) []string              { return b.Labels(SourceLabels, i) }
func (b *Batch) DestLabels(i int) []string                { return b.Labels(DestLabels, i) }
func (b *Batch) PacketsIn(i int) int64                    { return b.Int(PacketsIn, i) }
func (b *Batch) PacketsOut(i int) int64                   { return b.Int(PacketsOut, i) }
func (b *Batch) BytesIn(i int) int64                      { return b.Int(BytesIn, i) }
func (b *Batch) BytesOut(i int) int64                     { return b.Int(BytesOut, i) }
func (b *Batch) NumConnectionsStarted(i int) int64        { return b.Int(NumConnectionsStarted, i) }
func (b *Batch) NumConnectionsCompleted(i int) int64      { return b.Int(NumConnectionsCompleted, i) }
func (b *Batch) NumConnectionsLive(i int) int64           { return b.Int(NumConnectionsLive, i) }
func (b *Batch) SetSourceName(i int, v string)            { b.SetString(SourceName, i, v) }
func (b *Batch) SetSourceNamespace(i int, v string)       { b.SetString(SourceNamespace, i, v) }
func (b *Batch) SetSourceType(i int, v EndpointType)      { b.SetEndpointType(SourceType, i, v) }
func (b *Batch) SetDestName(i int, v string)              { b.SetString(DestName, i, v) }
func (b *Batch) SetDestNamespace(i int, v string)         { b.SetString(DestNamespace, i, v) }
func (b *Batch) SetDestType(i int, v EndpointType)        { b.SetEndpointType(DestType, i, v) }
func (b *Batch) SetDestPort(i int, v int64)               { b.SetInt(DestPort, i, v) }
func (b *Batch) SetDestServiceName(i int, v string)       { b.SetString(DestServiceName, i, v) }
func (b *Batch) SetDestServiceNamespace(i int, v string)  { b.SetString(DestServiceNamespace, i, v) }
func (b *Batch) SetDestServicePortName(i int, v string)   { b.SetString(DestServicePortName, i, v) }
func (b *Batch) SetDestServicePort(i int, v int64)        { b.SetInt(DestServicePort, i, v) }
func (b *Batch) SetProto(i int, v string)                 { b.SetString(Proto, i, v) }
func (b *Batch) SetEnforcedPolicies(i int, v []PolicyHit) { b.SetPolicies(EnforcedPolicies, i, v) }
func (b *Batch) SetPendingPolicies(i int, v []PolicyHit)  { b.SetPolicies(PendingPolicies, i, v) }
func (b *Batch) SetStartTime(i int, v int64)              { b.SetInt(StartTime, i, v) }
func (b *Batch) SetEndTime(i int, v int64)                { b.SetInt(EndTime, i, v) }
func (b *Batch) SetSourceLabels(i int, v []string)        { b.SetLabels(SourceLabels, i, v) }
func (b *Batch) SetDestLabels(i int, v []string)          { b.SetLabels(DestLabels, i, v) }
func (b *Batch) SetPacketsIn(i int, v int64)              { b.SetInt(PacketsIn, i, v) }
func (b *Batch) SetPacketsOut(i int, v int64)             { b.SetInt(PacketsOut, i, v) }
func (b *Batch) SetBytesIn(i int, v int64)                { b.SetInt(BytesIn, i, v) }
func (b *Batch) SetBytesOut(i int, v int64)               { b.SetInt(BytesOut, i, v) }
func (b *Batch) SetNumConnectionsStarted(i int, v int64)  { b.SetInt(NumConnectionsStarted, i, v) }
func (b *Batch) SetNumConnectionsCompleted(i int, v int64) {
	b.SetInt(NumConnectionsCompleted, i, v)
}
func (b *Batch) SetNumConnectionsLive(i int, v int64) { b.SetInt(NumConnectionsLive, i, v) }

// ---- Outcomes ---------------------------------------------------------------------------------------------------

// Keep passes flow i on (the default), with the changes made to it.
func (b *Batch) Keep(i int) { b.check(i); b.outcomes[i] = Outcome{} }

// Drop does not export flow i.
func (b *Batch) Drop(i int) { b.check(i); b.outcomes[i] = Outcome{Kind: OutcomeDrop} }

// Fail reports that flow i could not be processed; the transform's failure policy decides what happens to it.
func (b *Batch) Fail(i int, message string) {
	b.check(i)
	b.outcomes[i] = Outcome{Kind: OutcomeError, Error: message}
}

// Expand replaces flow i by these records (none drops it).
func (b *Batch) Expand(i int, outputs ...Output) {
	b.check(i)
	b.outcomes[i] = Outcome{Kind: OutcomeExpand, Outputs: outputs}
}

// Annotate keeps flow i and returns its annotations to add to (attributes, severity, body).
func (b *Batch) Annotate(i int) *Annotations {
	b.check(i)
	o := &b.outcomes[i]
	if o.Kind != OutcomeAnnotate {
		*o = Outcome{Kind: OutcomeAnnotate}
	}
	return &o.Annotations
}

// Str adds a string attribute.
func (a *Annotations) Str(key, value string) *Annotations {
	a.Attributes = append(a.Attributes, Attribute{key, Value{Kind: ValueStr, Str: value}})
	return a
}

// Int adds an integer attribute.
func (a *Annotations) Int(key string, value int64) *Annotations {
	a.Attributes = append(a.Attributes, Attribute{key, Value{Kind: ValueInt, Int: value}})
	return a
}

// Float adds a floating-point attribute.
func (a *Annotations) Float(key string, value float64) *Annotations {
	a.Attributes = append(a.Attributes, Attribute{key, Value{Kind: ValueFloat, Float: value}})
	return a
}

// Bool adds a boolean attribute.
func (a *Annotations) Bool(key string, value bool) *Annotations {
	a.Attributes = append(a.Attributes, Attribute{key, Value{Kind: ValueBool, Bool: value}})
	return a
}

// StrList adds a string-list attribute.
func (a *Annotations) StrList(key string, value []string) *Annotations {
	a.Attributes = append(a.Attributes, Attribute{key, Value{Kind: ValueStrList, StrList: value}})
	return a
}

// SetSeverity sets the record's severity.
func (a *Annotations) SetSeverity(s Severity) *Annotations { a.Severity = &s; return a }

// SetBody sets the record's body.
func (a *Annotations) SetBody(body Body) *Annotations { a.Body = &body; return a }
