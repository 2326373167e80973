//! [`Flow`]: one flow of a batch, read like a struct, paid for by the field.

use std::cell::OnceCell;

use crate::bindings::flowgate::transform::types::{Batch, LabelsColumn, PoliciesColumn, StringColumn};
use crate::{
    Action, EndpointField, EndpointType, FlowRecord, IntField, LabelsField, Outcome, PoliciesField, PolicyHit,
    Reporter, StringField,
};

const STRING_FIELDS: usize = 8;
const INT_FIELDS: usize = 11;

/// The columns of one batch fetched so far: each the first time any flow reads that field.
#[derive(Default)]
struct Columns {
    strings: [OnceCell<StringColumn>; STRING_FIELDS],
    ints: [OnceCell<Vec<i64>>; INT_FIELDS],
    actions: OnceCell<Vec<Action>>,
    reporters: OnceCell<Vec<Reporter>>,
    endpoints: [OnceCell<Vec<EndpointType>>; 2],
    labels: [OnceCell<LabelsColumn>; 2],
    policies: [OnceCell<PoliciesColumn>; 2],
}

/// Where a flow's fields come from: the host's batch, or a record (native unit tests, [`Flow::of`]).
enum Source<'a> {
    Batch { batch: &'a Batch, columns: &'a Columns, i: u32 },
    Record(&'a FlowRecord),
}

/// A change made to the flow: kept here (later reads see it) and sent to the host with the outcome.
#[derive(Debug, Clone, PartialEq)]
enum Edit {
    String(StringField, String),
    Int(IntField, i64),
    Action(Action),
    Reporter(Reporter),
    Endpoint(EndpointField, EndpointType),
    Labels(LabelsField, Vec<String>),
    /// Labels kept from the batch's label column, by index (sent as numbers); the strings when read back.
    LabelsKept(LabelsField, Vec<u32>, OnceCell<Vec<String>>),
    Policies(PoliciesField, Vec<PolicyHit>),
}

impl Edit {
    /// Two edits of the same field: the later replaces the earlier.
    fn same_field(&self, other: &Edit) -> bool {
        match (self, other) {
            (Edit::String(a, _), Edit::String(b, _)) => a == b,
            (Edit::Int(a, _), Edit::Int(b, _)) => a == b,
            (Edit::Action(_), Edit::Action(_)) | (Edit::Reporter(_), Edit::Reporter(_)) => true,
            (Edit::Endpoint(a, _), Edit::Endpoint(b, _)) => a == b,
            (Edit::Labels(a, _) | Edit::LabelsKept(a, ..), Edit::Labels(b, _) | Edit::LabelsKept(b, ..)) => a == b,
            (Edit::Policies(a, _), Edit::Policies(b, _)) => a == b,
            _ => false,
        }
    }
}

/// One flow: typed getters for every field of the contract's `flow`, and setters.
///
/// In a component, a getter's first call in a batch fetches that field for every flow of the batch (one call into
/// the host); label and policy lists are fetched per flow. Natively, [`Flow::of`] reads a [`FlowRecord`], so a
/// transform's unit tests need no runtime.
pub struct Flow<'a> {
    source: Source<'a>,
    edits: Vec<Edit>,
    source_labels: OnceCell<Vec<String>>,
    dest_labels: OnceCell<Vec<String>>,
    enforced_policies: OnceCell<Vec<PolicyHit>>,
    pending_policies: OnceCell<Vec<PolicyHit>>,
}

macro_rules! strings {
    ($($get:ident / $set:ident: $field:ident),* $(,)?) => {
        $(
            #[doc = concat!("`", stringify!($get), "`.")]
            pub fn $get(&self) -> &str {
                self.string(StringField::$field)
            }
            #[doc = concat!("Sets `", stringify!($get), "`.")]
            pub fn $set(&mut self, value: impl Into<String>) {
                self.edit(Edit::String(StringField::$field, value.into()));
            }
        )*
    };
}

macro_rules! ints {
    ($($get:ident / $set:ident: $field:ident),* $(,)?) => {
        $(
            #[doc = concat!("`", stringify!($get), "`.")]
            pub fn $get(&self) -> i64 {
                self.int(IntField::$field)
            }
            #[doc = concat!("Sets `", stringify!($get), "`.")]
            pub fn $set(&mut self, value: i64) {
                self.edit(Edit::Int(IntField::$field, value));
            }
        )*
    };
}

impl<'a> Flow<'a> {
    /// A flow read from a whole record: for native unit tests of a transform.
    pub fn of(record: &'a FlowRecord) -> Self {
        Flow::new(Source::Record(record))
    }

    fn new(source: Source<'a>) -> Self {
        Flow {
            source,
            edits: Vec::new(),
            source_labels: OnceCell::new(),
            dest_labels: OnceCell::new(),
            enforced_policies: OnceCell::new(),
            pending_policies: OnceCell::new(),
        }
    }

    strings! {
        source_name / set_source_name: SourceName,
        source_namespace / set_source_namespace: SourceNamespace,
        dest_name / set_dest_name: DestName,
        dest_namespace / set_dest_namespace: DestNamespace,
        dest_service_name / set_dest_service_name: DestServiceName,
        dest_service_namespace / set_dest_service_namespace: DestServiceNamespace,
        dest_service_port_name / set_dest_service_port_name: DestServicePortName,
        proto / set_proto: Proto,
    }

    ints! {
        dest_port / set_dest_port: DestPort,
        dest_service_port / set_dest_service_port: DestServicePort,
        start_time / set_start_time: StartTime,
        end_time / set_end_time: EndTime,
        packets_in / set_packets_in: PacketsIn,
        packets_out / set_packets_out: PacketsOut,
        bytes_in / set_bytes_in: BytesIn,
        bytes_out / set_bytes_out: BytesOut,
        num_connections_started / set_num_connections_started: NumConnectionsStarted,
        num_connections_completed / set_num_connections_completed: NumConnectionsCompleted,
        num_connections_live / set_num_connections_live: NumConnectionsLive,
    }

    /// A string field by its contract name.
    pub fn string(&self, field: StringField) -> &str {
        if let Some(v) = self.edits.iter().rev().find_map(|e| match e {
            Edit::String(f, v) if *f == field => Some(v),
            _ => None,
        }) {
            return v;
        }
        match &self.source {
            Source::Batch { batch, columns, i } => {
                let column = columns.strings[field as usize].get_or_init(|| batch.strings(field));
                &column.values[column.at[*i as usize] as usize]
            }
            Source::Record(r) => match field {
                StringField::SourceName => &r.source_name,
                StringField::SourceNamespace => &r.source_namespace,
                StringField::DestName => &r.dest_name,
                StringField::DestNamespace => &r.dest_namespace,
                StringField::DestServiceName => &r.dest_service_name,
                StringField::DestServiceNamespace => &r.dest_service_namespace,
                StringField::DestServicePortName => &r.dest_service_port_name,
                StringField::Proto => &r.proto,
            },
        }
    }

    /// Sets a string field by its contract name.
    pub fn set_string(&mut self, field: StringField, value: impl Into<String>) {
        self.edit(Edit::String(field, value.into()));
    }

    /// An integer field by its contract name.
    pub fn int(&self, field: IntField) -> i64 {
        if let Some(v) = self.edits.iter().rev().find_map(|e| match e {
            Edit::Int(f, v) if *f == field => Some(*v),
            _ => None,
        }) {
            return v;
        }
        match &self.source {
            Source::Batch { batch, columns, i } => {
                columns.ints[field as usize].get_or_init(|| batch.ints(field))[*i as usize]
            }
            Source::Record(r) => match field {
                IntField::DestPort => r.dest_port,
                IntField::DestServicePort => r.dest_service_port,
                IntField::StartTime => r.start_time,
                IntField::EndTime => r.end_time,
                IntField::PacketsIn => r.packets_in,
                IntField::PacketsOut => r.packets_out,
                IntField::BytesIn => r.bytes_in,
                IntField::BytesOut => r.bytes_out,
                IntField::NumConnectionsStarted => r.num_connections_started,
                IntField::NumConnectionsCompleted => r.num_connections_completed,
                IntField::NumConnectionsLive => r.num_connections_live,
            },
        }
    }

    /// Sets an integer field by its contract name.
    pub fn set_int(&mut self, field: IntField, value: i64) {
        self.edit(Edit::Int(field, value));
    }

    /// What the enforcing policy did.
    pub fn action(&self) -> Action {
        if let Some(a) = self.edits.iter().rev().find_map(|e| match e {
            Edit::Action(a) => Some(*a),
            _ => None,
        }) {
            return a;
        }
        match &self.source {
            Source::Batch { batch, columns, i } => columns.actions.get_or_init(|| batch.actions())[*i as usize],
            Source::Record(r) => r.action,
        }
    }

    /// Sets the action. `Action::Unknown` keeps the number the flow came with.
    pub fn set_action(&mut self, value: Action) {
        self.edit(Edit::Action(value));
    }

    /// Which end reported the flow.
    pub fn reporter(&self) -> Reporter {
        if let Some(r) = self.edits.iter().rev().find_map(|e| match e {
            Edit::Reporter(r) => Some(*r),
            _ => None,
        }) {
            return r;
        }
        match &self.source {
            Source::Batch { batch, columns, i } => columns.reporters.get_or_init(|| batch.reporters())[*i as usize],
            Source::Record(r) => r.reporter,
        }
    }

    /// Sets the reporter.
    pub fn set_reporter(&mut self, value: Reporter) {
        self.edit(Edit::Reporter(value));
    }

    /// The source endpoint's type.
    pub fn source_type(&self) -> EndpointType {
        self.endpoint(EndpointField::SourceType)
    }

    /// The destination endpoint's type.
    pub fn dest_type(&self) -> EndpointType {
        self.endpoint(EndpointField::DestType)
    }

    /// Sets the source endpoint's type.
    pub fn set_source_type(&mut self, value: EndpointType) {
        self.edit(Edit::Endpoint(EndpointField::SourceType, value));
    }

    /// Sets the destination endpoint's type.
    pub fn set_dest_type(&mut self, value: EndpointType) {
        self.edit(Edit::Endpoint(EndpointField::DestType, value));
    }

    fn endpoint(&self, field: EndpointField) -> EndpointType {
        if let Some(t) = self.edits.iter().rev().find_map(|e| match e {
            Edit::Endpoint(f, t) if *f == field => Some(*t),
            _ => None,
        }) {
            return t;
        }
        match &self.source {
            Source::Batch { batch, columns, i } => {
                columns.endpoints[field as usize].get_or_init(|| batch.endpoint_types(field))[*i as usize]
            }
            Source::Record(r) => match field {
                EndpointField::SourceType => r.source_type,
                EndpointField::DestType => r.dest_type,
            },
        }
    }

    /// `key=value` labels of the source pods.
    pub fn source_labels(&self) -> &[String] {
        self.labels(LabelsField::SourceLabels)
    }

    /// `key=value` labels of the destination pods.
    pub fn dest_labels(&self) -> &[String] {
        self.labels(LabelsField::DestLabels)
    }

    /// Sets the source labels.
    pub fn set_source_labels(&mut self, value: Vec<String>) {
        self.edit(Edit::Labels(LabelsField::SourceLabels, value));
    }

    /// Sets the destination labels.
    pub fn set_dest_labels(&mut self, value: Vec<String>) {
        self.edit(Edit::Labels(LabelsField::DestLabels, value));
    }

    fn labels(&self, field: LabelsField) -> &[String] {
        if let Some(v) = self.edits.iter().rev().find_map(|e| match e {
            Edit::Labels(f, v) if *f == field => Some(v.as_slice()),
            Edit::LabelsKept(f, kept, strings) if *f == field => Some(strings.get_or_init(|| {
                let column = self.labels_column(field).expect("kept from the column");
                kept.iter().map(|&k| column.values[k as usize].clone()).collect()
            })),
            _ => None,
        }) {
            return v;
        }
        let cell = match field {
            LabelsField::SourceLabels => &self.source_labels,
            LabelsField::DestLabels => &self.dest_labels,
        };
        cell.get_or_init(|| match &self.source {
            Source::Batch { i, .. } => {
                let column = self.labels_column(field).expect("a batch flow");
                let range = column.starts[*i as usize] as usize..column.starts[*i as usize + 1] as usize;
                column.at[range].iter().map(|&k| column.values[k as usize].clone()).collect()
            }
            Source::Record(r) => match field {
                LabelsField::SourceLabels => r.source_labels.clone(),
                LabelsField::DestLabels => r.dest_labels.clone(),
            },
        })
    }

    /// The batch's label column for `field` (fetched on first use); `None` for a flow read from a record.
    fn labels_column(&self, field: LabelsField) -> Option<&'a LabelsColumn> {
        match &self.source {
            Source::Batch { batch, columns, .. } => {
                Some(columns.labels[field as usize].get_or_init(|| batch.all_labels(field)))
            }
            Source::Record(_) => None,
        }
    }

    /// Keeps the source labels for which `keep` is true; whether any went. In a component the kept labels go
    /// back to the host as numbers into the batch's label column, not as strings.
    pub fn retain_source_labels(&mut self, keep: impl FnMut(&str) -> bool) -> bool {
        self.retain_labels(LabelsField::SourceLabels, keep)
    }

    /// Keeps the destination labels for which `keep` is true (as [`Flow::retain_source_labels`]).
    pub fn retain_dest_labels(&mut self, keep: impl FnMut(&str) -> bool) -> bool {
        self.retain_labels(LabelsField::DestLabels, keep)
    }

    fn retain_labels(&mut self, field: LabelsField, mut keep: impl FnMut(&str) -> bool) -> bool {
        let edited =
            self.edits.iter().any(|e| matches!(e, Edit::Labels(f, _) | Edit::LabelsKept(f, ..) if *f == field));
        if let (false, Source::Batch { i, .. }) = (edited, &self.source) {
            let column = self.labels_column(field).expect("a batch flow");
            let range = column.starts[*i as usize] as usize..column.starts[*i as usize + 1] as usize;
            let all = &column.at[range];
            let kept: Vec<u32> = all.iter().copied().filter(|&k| keep(&column.values[k as usize])).collect();
            if kept.len() == all.len() {
                return false;
            }
            self.edit(Edit::LabelsKept(field, kept, OnceCell::new()));
            return true;
        }
        let labels = self.labels(field);
        let kept: Vec<String> = labels.iter().filter(|l| keep(l)).cloned().collect();
        if kept.len() == labels.len() {
            return false;
        }
        self.edit(Edit::Labels(field, kept));
        true
    }

    /// Policies that decided the flow, in evaluation order.
    pub fn enforced_policies(&self) -> &[PolicyHit] {
        self.policies(PoliciesField::EnforcedPolicies)
    }

    /// Staged policies and what they would have decided.
    pub fn pending_policies(&self) -> &[PolicyHit] {
        self.policies(PoliciesField::PendingPolicies)
    }

    /// Sets the enforced policies. An `unknown` kind or action keeps the number of the hit at the same position.
    pub fn set_enforced_policies(&mut self, value: Vec<PolicyHit>) {
        self.edit(Edit::Policies(PoliciesField::EnforcedPolicies, value));
    }

    /// Sets the pending policies (as [`Flow::set_enforced_policies`]).
    pub fn set_pending_policies(&mut self, value: Vec<PolicyHit>) {
        self.edit(Edit::Policies(PoliciesField::PendingPolicies, value));
    }

    fn policies(&self, field: PoliciesField) -> &[PolicyHit] {
        if let Some(v) = self.edits.iter().rev().find_map(|e| match e {
            Edit::Policies(f, v) if *f == field => Some(v),
            _ => None,
        }) {
            return v;
        }
        let cell = match field {
            PoliciesField::EnforcedPolicies => &self.enforced_policies,
            PoliciesField::PendingPolicies => &self.pending_policies,
        };
        cell.get_or_init(|| match &self.source {
            Source::Batch { batch, i, .. } => batch.policies(*i, field),
            Source::Record(r) => match field {
                PoliciesField::EnforcedPolicies => r.enforced_policies.clone(),
                PoliciesField::PendingPolicies => r.pending_policies.clone(),
            },
        })
    }

    /// The whole flow as one typed record, with this transform's changes: one call into the host, for logic
    /// that reads nearly every field, and for [`Outcome::Expand`].
    pub fn record(&self) -> FlowRecord {
        let mut r = match &self.source {
            Source::Batch { batch, i, .. } => batch.record(*i),
            Source::Record(r) => (*r).clone(),
        };
        for e in &self.edits {
            let e = match e {
                Edit::LabelsKept(field, ..) => Edit::Labels(*field, self.labels(*field).to_vec()),
                other => other.clone(),
            };
            apply(&mut r, e);
        }
        r
    }

    /// Whether a setter was called on this flow.
    pub fn is_changed(&self) -> bool {
        !self.edits.is_empty()
    }

    fn edit(&mut self, edit: Edit) {
        self.edits.retain(|e| !e.same_field(&edit));
        self.edits.push(edit);
    }

    /// Sends the changes to the host (only for outcomes that pass the flow on: the host discards the rest).
    fn send(self, outcome: &Outcome) {
        let Source::Batch { batch, i, .. } = self.source else { return };
        if !matches!(outcome, Outcome::Keep | Outcome::Annotate(_)) {
            return;
        }
        for e in self.edits {
            match e {
                Edit::String(f, v) => batch.set_string(i, f, &v),
                Edit::Int(f, v) => batch.set_int(i, f, v),
                Edit::Action(a) => batch.set_action(i, a),
                Edit::Reporter(r) => batch.set_reporter(i, r),
                Edit::Endpoint(f, t) => batch.set_endpoint_type(i, f, t),
                Edit::Labels(f, v) => batch.set_labels(i, f, &v),
                Edit::LabelsKept(f, kept, _) => batch.set_labels_from_column(i, f, &kept),
                Edit::Policies(f, v) => batch.set_policies(i, f, &v),
            }
        }
    }
}

fn apply(r: &mut FlowRecord, e: Edit) {
    match e {
        Edit::String(f, v) => {
            *match f {
                StringField::SourceName => &mut r.source_name,
                StringField::SourceNamespace => &mut r.source_namespace,
                StringField::DestName => &mut r.dest_name,
                StringField::DestNamespace => &mut r.dest_namespace,
                StringField::DestServiceName => &mut r.dest_service_name,
                StringField::DestServiceNamespace => &mut r.dest_service_namespace,
                StringField::DestServicePortName => &mut r.dest_service_port_name,
                StringField::Proto => &mut r.proto,
            } = v
        }
        Edit::Int(f, v) => {
            *match f {
                IntField::DestPort => &mut r.dest_port,
                IntField::DestServicePort => &mut r.dest_service_port,
                IntField::StartTime => &mut r.start_time,
                IntField::EndTime => &mut r.end_time,
                IntField::PacketsIn => &mut r.packets_in,
                IntField::PacketsOut => &mut r.packets_out,
                IntField::BytesIn => &mut r.bytes_in,
                IntField::BytesOut => &mut r.bytes_out,
                IntField::NumConnectionsStarted => &mut r.num_connections_started,
                IntField::NumConnectionsCompleted => &mut r.num_connections_completed,
                IntField::NumConnectionsLive => &mut r.num_connections_live,
            } = v
        }
        Edit::Action(a) => r.action = a,
        Edit::Reporter(x) => r.reporter = x,
        Edit::Endpoint(EndpointField::SourceType, t) => r.source_type = t,
        Edit::Endpoint(EndpointField::DestType, t) => r.dest_type = t,
        Edit::Labels(LabelsField::SourceLabels, v) => r.source_labels = v,
        Edit::Labels(LabelsField::DestLabels, v) => r.dest_labels = v,
        // Turned into `Labels` by `Flow::record` before it applies them.
        Edit::LabelsKept(..) => {}
        Edit::Policies(PoliciesField::EnforcedPolicies, v) => r.enforced_policies = v,
        Edit::Policies(PoliciesField::PendingPolicies, v) => r.pending_policies = v,
    }
}

/// Every flow of a batch at once: columns, batch annotations, and each [`Flow`]. For transforms that map or
/// decide column by column ([`crate::Transform::process_batch`]); most transforms never see it.
pub struct Flows<'a> {
    source: FlowsSource<'a>,
    columns: Columns,
    /// Batch annotations made on records (native tests); in a component they go straight to the host.
    recorded: Vec<(String, BatchValues)>,
    /// Column setters called on records (native tests).
    set: Vec<(StringField, StringColumn)>,
}

enum FlowsSource<'a> {
    Batch(&'a Batch),
    Records(&'a [FlowRecord]),
}

/// A batch annotation's values, as made.
#[derive(Debug, Clone, PartialEq)]
enum BatchValues {
    Strings(StringColumn),
    StringLists(LabelsColumn),
    Ints(Vec<i64>),
    StringField(StringField),
    IntField(IntField),
}

impl<'a> Flows<'a> {
    /// The flows of a host batch.
    pub(crate) fn batch(batch: &'a Batch) -> Self {
        Flows { source: FlowsSource::Batch(batch), columns: Columns::default(), recorded: Vec::new(), set: Vec::new() }
    }

    /// Flows read from records: for native unit tests.
    pub fn of(records: &'a [FlowRecord]) -> Self {
        Flows {
            source: FlowsSource::Records(records),
            columns: Columns::default(),
            recorded: Vec::new(),
            set: Vec::new(),
        }
    }

    /// How many flows.
    pub fn len(&self) -> usize {
        match self.source {
            FlowsSource::Batch(b) => b.len() as usize,
            FlowsSource::Records(r) => r.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flow `i`.
    pub fn flow(&self, i: usize) -> Flow<'_> {
        match self.source {
            FlowsSource::Batch(batch) => Flow::new(Source::Batch { batch, columns: &self.columns, i: i as u32 }),
            FlowsSource::Records(r) => Flow::of(&r[i]),
        }
    }

    /// Runs `process` on flow `i` and sends its changes with its outcome: what the default
    /// [`crate::Transform::process_batch`] does for each flow.
    pub fn run(&self, i: usize, process: impl FnOnce(&mut Flow<'_>) -> Outcome) -> Outcome {
        let mut flow = self.flow(i);
        let outcome = process(&mut flow);
        flow.send(&outcome);
        outcome
    }

    /// One string field of every flow: flow `i`'s value is `values[at[i]]`, each distinct value once.
    pub fn strings(&self, field: StringField) -> &StringColumn {
        self.columns.strings[field as usize].get_or_init(|| match self.source {
            FlowsSource::Batch(b) => b.strings(field),
            FlowsSource::Records(r) => {
                let mut values: Vec<String> = Vec::new();
                let at = r
                    .iter()
                    .map(|rec| {
                        let v = Flow::of(rec).string(field).to_string();
                        match values.iter().position(|x| *x == v) {
                            Some(p) => p as u32,
                            None => {
                                values.push(v);
                                values.len() as u32 - 1
                            }
                        }
                    })
                    .collect();
                StringColumn { values, at }
            }
        })
    }

    /// One integer field of every flow.
    pub fn ints(&self, field: IntField) -> &[i64] {
        self.columns.ints[field as usize].get_or_init(|| match self.source {
            FlowsSource::Batch(b) => b.ints(field),
            FlowsSource::Records(r) => r.iter().map(|rec| Flow::of(rec).int(field)).collect(),
        })
    }

    /// One policy list of every flow: each distinct hit once, flow `i`'s as `at[starts[i]..starts[i + 1]]`.
    pub fn policies(&self, field: PoliciesField) -> &PoliciesColumn {
        self.columns.policies[field as usize].get_or_init(|| match self.source {
            FlowsSource::Batch(b) => b.all_policies(field),
            FlowsSource::Records(r) => {
                let mut hits: Vec<PolicyHit> = Vec::new();
                let (mut at, mut starts) = (Vec::new(), Vec::new());
                for rec in r {
                    starts.push(at.len() as u32);
                    for h in Flow::of(rec).policies(field) {
                        let i = match hits.iter().position(|x| x == h) {
                            Some(i) => i,
                            None => {
                                hits.push(h.clone());
                                hits.len() - 1
                            }
                        };
                        at.push(i as u32);
                    }
                }
                starts.push(at.len() as u32);
                PoliciesColumn { hits, at, starts }
            }
        })
    }

    /// Every flow's action.
    pub fn actions(&self) -> &[Action] {
        self.columns.actions.get_or_init(|| match self.source {
            FlowsSource::Batch(b) => b.actions(),
            FlowsSource::Records(r) => r.iter().map(|rec| rec.action).collect(),
        })
    }

    /// Every flow's reporter.
    pub fn reporters(&self) -> &[Reporter] {
        self.columns.reporters.get_or_init(|| match self.source {
            FlowsSource::Batch(b) => b.reporters(),
            FlowsSource::Records(r) => r.iter().map(|rec| rec.reporter).collect(),
        })
    }

    /// One endpoint-type field of every flow.
    pub fn endpoint_types(&self, field: EndpointField) -> &[EndpointType] {
        self.columns.endpoints[field as usize].get_or_init(|| match self.source {
            FlowsSource::Batch(b) => b.endpoint_types(field),
            FlowsSource::Records(r) => r.iter().map(|rec| Flow::of(rec).endpoint(field)).collect(),
        })
    }

    /// A string attribute for every flow this transform passes on: flow `i` gets `values[at[i]]`, none when
    /// `at[i]` is past the end of `values`.
    pub fn annotate_strings(&mut self, key: &str, values: StringColumn) {
        self.annotate(key, BatchValues::Strings(values));
    }

    /// Sets a string field of every flow: flow `i` gets `values.values[values.at[i]]`, and keeps its value when
    /// `values.at[i]` is past the end of `values.values`. Natively the flows are read from records, which do not
    /// change: [`Flows::set_of`] shows what flow `i` was given.
    pub fn set_strings(&mut self, field: StringField, values: StringColumn) {
        match self.source {
            FlowsSource::Batch(b) => b.set_strings(field, &values),
            FlowsSource::Records(_) => self.set.push((field, values)),
        }
    }

    /// What [`Flows::set_strings`] gave flow `i` (native tests).
    pub fn set_of(&self, i: usize, field: StringField) -> Option<&str> {
        self.set
            .iter()
            .rev()
            .filter(|(f, _)| *f == field)
            .find_map(|(_, c)| c.at.get(i).and_then(|&at| c.values.get(at as usize)).map(String::as_str))
    }

    /// A string-list attribute for every flow: flow `i` gets `values[at[k]]` for `k` in
    /// `starts[i]..starts[i + 1]`.
    pub fn annotate_string_lists(&mut self, key: &str, values: LabelsColumn) {
        self.annotate(key, BatchValues::StringLists(values));
    }

    /// An integer attribute for every flow (one value per flow).
    pub fn annotate_ints(&mut self, key: &str, values: Vec<i64>) {
        self.annotate(key, BatchValues::Ints(values));
    }

    /// The flow's own string field as an attribute, as the flow leaves this transform (nothing crosses).
    pub fn annotate_string_field(&mut self, key: &str, field: StringField) {
        self.annotate(key, BatchValues::StringField(field));
    }

    /// The flow's own integer field as an attribute, as the flow leaves this transform.
    pub fn annotate_int_field(&mut self, key: &str, field: IntField) {
        self.annotate(key, BatchValues::IntField(field));
    }

    fn annotate(&mut self, key: &str, values: BatchValues) {
        match self.source {
            FlowsSource::Batch(b) => match &values {
                BatchValues::Strings(c) => b.annotate_strings(key, c),
                BatchValues::StringLists(c) => b.annotate_string_lists(key, c),
                BatchValues::Ints(v) => b.annotate_ints(key, v),
                BatchValues::StringField(f) => b.annotate_string_field(key, *f),
                BatchValues::IntField(f) => b.annotate_int_field(key, *f),
            },
            FlowsSource::Records(_) => self.recorded.push((key.to_string(), values)),
        }
    }

    /// The batch annotations flow `i` got, in order (native tests: records only; the host applies them in a
    /// component).
    pub fn annotations_of(&self, i: usize) -> Vec<crate::Attribute> {
        let FlowsSource::Records(r) = self.source else { return Vec::new() };
        let flow = Flow::of(&r[i]);
        self.recorded
            .iter()
            .filter_map(|(key, values)| {
                let value = match values {
                    BatchValues::Strings(c) => crate::Value::Str(c.values.get(*c.at.get(i)? as usize)?.clone()),
                    BatchValues::Ints(v) => crate::Value::Int(*v.get(i)?),
                    BatchValues::StringLists(c) => {
                        let range = *c.starts.get(i)? as usize..*c.starts.get(i + 1)? as usize;
                        crate::Value::StrList(c.at[range].iter().map(|&k| c.values[k as usize].clone()).collect())
                    }
                    BatchValues::StringField(f) => crate::Value::Str(flow.string(*f).to_string()),
                    BatchValues::IntField(f) => crate::Value::Int(flow.int(*f)),
                };
                Some(crate::Attribute { key: key.clone(), value })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample_flow;

    #[test]
    fn a_flow_reads_like_its_record_and_sees_its_own_changes() {
        let record = sample_flow();
        let mut f = Flow::of(&record);
        assert_eq!((f.source_namespace(), f.dest_port(), f.action()), ("checkout", 5432, Action::Allow));
        assert_eq!(f.source_labels(), ["app=checkout-api", "team=shop"]);
        assert!(!f.is_changed());
        f.set_source_namespace("anon-1");
        f.set_source_namespace("anon-2");
        f.set_dest_port(443);
        f.set_action(Action::Deny);
        f.set_source_labels(vec!["app=checkout-api".into()]);
        assert_eq!((f.source_namespace(), f.dest_port(), f.action()), ("anon-2", 443, Action::Deny));
        assert_eq!(f.source_labels(), ["app=checkout-api"]);
        assert_eq!(f.edits.len(), 4, "a later change to a field replaces the earlier one");
        assert!(!f.retain_dest_labels(|_| true), "nothing dropped, nothing changed");
        assert!(f.retain_dest_labels(|l| l != "app=postgres"));
        assert!(f.dest_labels().is_empty());
        let changed = f.record();
        assert_eq!((changed.source_namespace.as_str(), changed.dest_port), ("anon-2", 443));
        assert_eq!(changed.dest_namespace, record.dest_namespace, "the rest as it was");
    }
}
