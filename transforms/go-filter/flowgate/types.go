// Package flowgate writes Flowgate transforms (flowgate:transform@0.2.0) in Go with the mainline toolchain
// (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared): a transform implements Transform, registers it from an init
// function, and reads and changes flows through a *Batch by field, never touching the `batch` resource, its
// columns or the canonical ABI. See README.md beside this module.
package flowgate

// Action is what the enforcing policy did with the flow.
type Action uint8

const (
	ActionUnspecified Action = iota
	ActionAllow
	ActionDeny
	ActionPass
	// ActionUnknown is a value this version of the contract does not name; the host keeps the number.
	ActionUnknown
)

// Reporter is which end of the connection reported the flow.
type Reporter uint8

const (
	ReporterUnspecified Reporter = iota
	ReporterSrc
	ReporterDst
	ReporterUnknown
)

// EndpointType is what an endpoint is.
type EndpointType uint8

const (
	EndpointUnspecified EndpointType = iota
	EndpointWorkload
	EndpointHost
	EndpointNetworkSet
	EndpointNetwork
	EndpointUnknown
)

// PolicyKind is the kind of policy that matched.
type PolicyKind uint8

const (
	PolicyKindUnspecified PolicyKind = iota
	PolicyKindCalicoNetworkPolicy
	PolicyKindGlobalNetworkPolicy
	PolicyKindStagedNetworkPolicy
	PolicyKindStagedGlobalNetworkPolicy
	PolicyKindStagedKubernetesNetworkPolicy
	PolicyKindNetworkPolicy
	PolicyKindAdminNetworkPolicy
	PolicyKindBaselineAdminNetworkPolicy
	PolicyKindProfile
	PolicyKindEndOfTier
	PolicyKindClusterNetworkPolicy
	PolicyKindUnknown
)

// PolicyTrigger is the policy an end-of-tier hit refers to.
type PolicyTrigger struct {
	Kind        PolicyKind
	Namespace   string
	Name        string
	Tier        string
	Action      Action
	PolicyIndex int64
	RuleIndex   int64
}

// PolicyHit is one policy rule that matched the flow.
type PolicyHit struct {
	Kind        PolicyKind
	Namespace   string
	Name        string
	Tier        string
	Action      Action
	PolicyIndex int64
	RuleIndex   int64
	// Trigger is set only on end-of-tier hits.
	Trigger *PolicyTrigger
}

// Flow is one Goldmane flow, the WIT `flow` record.
type Flow struct {
	SourceName              string
	SourceNamespace         string
	SourceType              EndpointType
	DestName                string
	DestNamespace           string
	DestType                EndpointType
	DestPort                int64
	DestServiceName         string
	DestServiceNamespace    string
	DestServicePortName     string
	DestServicePort         int64
	Proto                   string
	Reporter                Reporter
	Action                  Action
	EnforcedPolicies        []PolicyHit
	PendingPolicies         []PolicyHit
	StartTime               int64
	EndTime                 int64
	SourceLabels            []string
	DestLabels              []string
	PacketsIn               int64
	PacketsOut              int64
	BytesIn                 int64
	BytesOut                int64
	NumConnectionsStarted   int64
	NumConnectionsCompleted int64
	NumConnectionsLive      int64
}

// StringField names a string field of a flow (the WIT `string-field`).
type StringField uint8

const (
	SourceName StringField = iota
	SourceNamespace
	DestName
	DestNamespace
	DestServiceName
	DestServiceNamespace
	DestServicePortName
	Proto
	numStringFields
)

// IntField names an integer field of a flow (the WIT `int-field`).
type IntField uint8

const (
	DestPort IntField = iota
	DestServicePort
	StartTime
	EndTime
	PacketsIn
	PacketsOut
	BytesIn
	BytesOut
	NumConnectionsStarted
	NumConnectionsCompleted
	NumConnectionsLive
	numIntFields
)

// EndpointField names an endpoint-type field (the WIT `endpoint-field`).
type EndpointField uint8

const (
	SourceType EndpointField = iota
	DestType
)

// LabelsField names a label list (the WIT `labels-field`).
type LabelsField uint8

const (
	SourceLabels LabelsField = iota
	DestLabels
)

// PoliciesField names a policy list (the WIT `policies-field`).
type PoliciesField uint8

const (
	EnforcedPolicies PoliciesField = iota
	PendingPolicies
)

// Severity is the OTLP severity of the record.
type Severity uint8

const (
	SeverityTrace Severity = iota
	SeverityDebug
	SeverityInfo
	SeverityWarn
	SeverityError
	SeverityFatal
)

// ValueKind says which field of a Value is set.
type ValueKind uint8

const (
	ValueStr ValueKind = iota
	ValueInt
	ValueFloat
	ValueBool
	ValueStrList
)

// Value is an OTLP attribute value.
type Value struct {
	Kind    ValueKind
	Str     string
	Int     int64
	Float   float64
	Bool    bool
	StrList []string
}

// Attribute is an OTLP attribute.
type Attribute struct {
	Key   string
	Value Value
}

// BodyKind says what the log record's body is.
type BodyKind uint8

const (
	BodyFlowJSON BodyKind = iota
	BodyStructured
	BodyAttributes
	BodyText
)

// Body is the log record's body.
type Body struct {
	Kind       BodyKind
	Structured []Attribute
	Text       string
}

// Annotations shape the record beyond its flow.
type Annotations struct {
	Attributes []Attribute
	Severity   *Severity
	Body       *Body
}

// Output is one record of an expansion.
type Output struct {
	Flow        Flow
	Annotations Annotations
}

// OutcomeKind says what becomes of a flow.
type OutcomeKind uint8

const (
	OutcomeKeep OutcomeKind = iota
	OutcomeDrop
	OutcomeAnnotate
	OutcomeExpand
	OutcomeError
)

// Outcome is what becomes of one input flow.
type Outcome struct {
	Kind        OutcomeKind
	Annotations Annotations // OutcomeAnnotate
	Outputs     []Output    // OutcomeExpand
	Error       string      // OutcomeError
}

// Level is a host log level.
type Level uint8

const (
	LevelDebug Level = iota
	LevelInfo
	LevelWarn
	LevelError
)
