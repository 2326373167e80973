package flowgate

// Host is the `batch` resource's methods, as the WIT declares them: in the component, calls across the
// canonical ABI (abi_wasm.go); in native tests, a fake (package fake). A transform never calls it directly:
// Batch fetches and caches through it.
type Host interface {
	Len() int
	Strings(field StringField) (values []string, at []uint32)
	Ints(field IntField) []int64
	Actions() []Action
	Reporters() []Reporter
	EndpointTypes(field EndpointField) []EndpointType
	Labels(flow int, field LabelsField) []string
	Policies(flow int, field PoliciesField) []PolicyHit
	Record(flow int) Flow

	SetString(flow int, field StringField, value string)
	SetInt(flow int, field IntField, value int64)
	SetAction(flow int, value Action)
	SetReporter(flow int, value Reporter)
	SetEndpointType(flow int, field EndpointField, value EndpointType)
	SetLabels(flow int, field LabelsField, value []string)
	SetPolicies(flow int, field PoliciesField, value []PolicyHit)
}

// Transform is what a Go transform implements.
type Transform interface {
	// Init reads the configuration; an error refuses the component. Keys never read are refused after it.
	Init(config *Config) error
	// Process decides every flow of the batch; a flow nobody decides is kept.
	Process(batch *Batch)
}

var registered Transform

// Register makes t the transform this component runs; call it from an init function of package main.
func Register(t Transform) { registered = t }

// RunInit is what the component's `init` does: t.Init, then the refusal of keys it never read.
func RunInit(t Transform, pairs [][2]string) error {
	c := NewConfig(pairs)
	if err := t.Init(c); err != nil {
		return err
	}
	return c.unknownKeys()
}

// RunProcess is what the component's `process` does with a batch: t.Process, then the outcomes, one per flow.
func RunProcess(t Transform, h Host) []Outcome {
	b := NewBatch(h)
	t.Process(b)
	return b.Outcomes()
}

// Log writes to the gateway's log, attributed to this transform (rate-limited by the host).
func Log(level Level, message string) { hostLog(level, message) }

// CounterAdd adds delta to the counter name (flowgate_transform_counter_total{transform, name}).
func CounterAdd(name string, delta uint64) { hostCounterAdd(name, delta) }
