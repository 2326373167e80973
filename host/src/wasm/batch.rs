//! The `batch` resource of `flowgate:transform@0.2.0`: the flows of one call, kept as their wire bytes, read by
//! column and changed by typed setters.
//!
//! Each flow is indexed once, when it enters the chain ([`FlowIndex`]: its scalars and the places of its strings
//! in its own bytes), and the index travels with it from transform to transform until a transform changes the
//! flow. Column getters answer from the indexes; label lists are read from the bytes; policy lists and the whole
//! typed record decode the flow (rare). Setters only record changes: [`apply`] writes them into the flow after
//! the call, for the flows whose outcome passes them on.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use wasmtime::component::Resource;

use super::bindings::types::{
    self, Action, EndpointField, EndpointType, IntField, LabelsField, PoliciesField, PolicyHit, Reporter, StringColumn,
    StringField,
};
use super::convert;
use super::{AttrKey, AttrValue, GuestState};
use crate::proto::{Flow, FlowKey};
use crate::wire::{Reader, WIRE_LEN, WIRE_VARINT, WireError};

/// A string field's place in its flow's bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

/// What the column getters read from one flow, found in one pass over its bytes: 168 bytes a flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowIndex {
    /// By [`StringField`] position.
    strings: [Span; 8],
    /// By [`IntField`] position.
    ints: [i64; 11],
    action: i32,
    reporter: i32,
    source_type: i32,
    dest_type: i32,
}

/// `FlowKey` string field numbers in [`StringField`] order.
const KEY_STRINGS: [u32; 8] = [1, 2, 4, 5, 8, 9, 10, 12];

/// A `FlowKey` string field's position in [`StringField`] order, by field number (the inverse of
/// [`KEY_STRINGS`]).
const STRING_SLOT: [u8; 13] = [0, 0, 1, 0, 2, 3, 0, 0, 4, 5, 6, 0, 7];

impl FlowIndex {
    /// Indexes an encoded `goldmane.Flow`. Fails on bytes that are not a flow.
    pub fn new(wire: &[u8]) -> Result<FlowIndex, WireError> {
        let mut ix = FlowIndex::default();
        let base = wire.as_ptr() as usize;
        let mut r = Reader::new(wire);
        while !r.is_empty() {
            match r.tag()? {
                // The key: as prost, a later occurrence's fields win (Goldmane writes one).
                (1, WIRE_LEN) => ix.key(r.len_delimited()?, base)?,
                (n @ 2..=3, WIRE_VARINT) => ix.ints[n as usize] = r.varint()? as i64,
                (n @ 6..=12, WIRE_VARINT) => ix.ints[n as usize - 2] = r.varint()? as i64,
                (4 | 5, WIRE_LEN) => drop(r.len_delimited()?),
                (1..=12, _) => return Err(WireError("Flow field with the wrong wire type")),
                (_, wire_type) => r.skip(wire_type)?,
            }
        }
        Ok(ix)
    }

    fn key(&mut self, key: &[u8], base: usize) -> Result<(), WireError> {
        let mut r = Reader::new(key);
        while !r.is_empty() {
            match r.tag()? {
                // Strings are not checked as UTF-8 here: the render at the end of the chain checks the whole body
                // (a flow that fails is dropped as malformed), and columns hand values on lossily.
                (n @ (1 | 2 | 4 | 5 | 8 | 9 | 10 | 12), WIRE_LEN) => {
                    let s = r.len_delimited()?;
                    let start = (s.as_ptr() as usize - base) as u32;
                    self.strings[STRING_SLOT[n as usize] as usize] = Span { start, len: s.len() as u32 };
                }
                (3, WIRE_VARINT) => self.source_type = r.varint()? as i32,
                (6, WIRE_VARINT) => self.dest_type = r.varint()? as i32,
                (7, WIRE_VARINT) => self.ints[0] = r.varint()? as i64,
                (11, WIRE_VARINT) => self.ints[1] = r.varint()? as i64,
                (13, WIRE_VARINT) => self.reporter = r.varint()? as i32,
                (14, WIRE_VARINT) => self.action = r.varint()? as i32,
                (15, WIRE_LEN) => drop(r.len_delimited()?),
                (1..=15, _) => return Err(WireError("FlowKey field with the wrong wire type")),
                (_, wire_type) => r.skip(wire_type)?,
            }
        }
        Ok(())
    }

    fn str<'w>(&self, wire: &'w [u8], field: StringField) -> &'w [u8] {
        let s = self.strings[field as usize];
        &wire[s.start as usize..(s.start + s.len) as usize]
    }

    fn int(&self, field: IntField) -> i64 {
        // `ints` holds dest_port, dest_service_port, then the flow's fields 2, 3 and 6 to 12: IntField's order.
        self.ints[field as usize]
    }
}

/// A label list's field number in `goldmane.Flow`.
fn labels_field_number(field: LabelsField) -> u32 {
    match field {
        LabelsField::SourceLabels => 4,
        LabelsField::DestLabels => 5,
    }
}

/// The label list `field` (flow field 4 or 5) read from the bytes.
fn labels(wire: &[u8], field: LabelsField) -> Result<Vec<String>, WireError> {
    let want = labels_field_number(field);
    let mut out = Vec::new();
    let mut r = Reader::new(wire);
    while !r.is_empty() {
        match r.tag()? {
            (n, WIRE_LEN) if n == want => out.push(String::from_utf8_lossy(r.len_delimited()?).into_owned()),
            (_, wire_type) => r.skip(wire_type)?,
        }
    }
    Ok(out)
}

/// A policy list's field number in `goldmane.PolicyTrace`.
fn policies_field_number(field: PoliciesField) -> u32 {
    match field {
        PoliciesField::EnforcedPolicies => 1,
        PoliciesField::PendingPolicies => 2,
    }
}

/// Calls `each` with the bytes of every hit of the trace's list `want` (1 enforced, 2 pending), in order, over
/// every key of the flow (as prost merges them): the policy lists read without decoding the flow.
fn for_each_hit<'w>(
    wire: &'w [u8],
    want: u32,
    mut each: impl FnMut(&'w [u8]) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let mut r = Reader::new(wire);
    while !r.is_empty() {
        match r.tag()? {
            (1, WIRE_LEN) => {
                let mut k = Reader::new(r.len_delimited()?);
                while !k.is_empty() {
                    match k.tag()? {
                        (15, WIRE_LEN) => {
                            let mut t = Reader::new(k.len_delimited()?);
                            while !t.is_empty() {
                                match t.tag()? {
                                    (n, WIRE_LEN) if n == want => each(t.len_delimited()?)?,
                                    (_, wire_type) => t.skip(wire_type)?,
                                }
                            }
                        }
                        (_, wire_type) => k.skip(wire_type)?,
                    }
                }
            }
            (_, wire_type) => r.skip(wire_type)?,
        }
    }
    Ok(())
}

/// One flow of a batch: its bytes and index.
#[derive(Debug, Clone)]
pub struct BatchFlow {
    pub wire: Bytes,
    pub index: FlowIndex,
}

/// A change a transform asked for, applied after its call. Strings are shared: a column setter's value, or a label
/// of the batch's label column, serves every flow it is set on without a copy.
#[derive(Debug, Clone)]
pub enum Change {
    String(StringField, Arc<str>),
    Int(IntField, i64),
    Action(Action),
    Reporter(Reporter),
    Endpoint(EndpointField, EndpointType),
    Labels(LabelsField, Vec<Arc<str>>),
    Policies(PoliciesField, Vec<PolicyHit>),
}

/// An attribute for every flow of a batch (`annotate-*`): one key, and each distinct string once, shared by the
/// attributes of every flow that has it.
#[derive(Debug, Clone)]
pub struct BatchAnnotation {
    pub key: AttrKey,
    pub values: BatchValues,
}

/// Where a batch annotation's values come from.
#[derive(Debug, Clone)]
pub enum BatchValues {
    /// Flow `i`'s value is `values[at[i]]`; none when `at[i]` is past the values.
    Strings {
        values: Vec<Arc<str>>,
        at: Vec<u32>,
    },
    /// Flow `i`'s list is `values[at[k]]` for `k` from `starts[i]` up to `starts[i + 1]`.
    StringLists {
        values: Vec<Arc<str>>,
        at: Vec<u32>,
        starts: Vec<u32>,
    },
    Ints(Vec<i64>),
    StringField(StringField),
    IntField(IntField),
}

impl BatchAnnotation {
    fn new(key: String, values: BatchValues) -> Self {
        BatchAnnotation { key: key.into(), values }
    }

    /// Whether the values are the flow's own fields.
    pub fn reads_the_flow(&self) -> bool {
        matches!(self.values, BatchValues::StringField(_) | BatchValues::IntField(_))
    }

    /// The value for flow `i` of the batch (`flow` as it leaves the transform, for field references); `None` when
    /// that flow gets no attribute.
    pub fn value(&self, i: usize, flow: Option<&BatchFlow>) -> Option<AttrValue> {
        match &self.values {
            BatchValues::Strings { values, at } => {
                at.get(i).and_then(|&at| values.get(at as usize)).map(|v| AttrValue::Str(v.clone()))
            }
            BatchValues::Ints(v) => v.get(i).map(|&n| AttrValue::Int(n)),
            BatchValues::StringLists { values, at, starts } => {
                let (from, to) = (*starts.get(i)? as usize, *starts.get(i + 1)? as usize);
                let list = at.get(from..to)?.iter().map(|&k| values.get(k as usize).cloned());
                list.collect::<Option<Arc<[Arc<str>]>>>().map(AttrValue::StrList)
            }
            BatchValues::StringField(f) => flow.map(|flow| {
                AttrValue::Str(Arc::from(String::from_utf8_lossy(flow.index.str(&flow.wire, *f)).as_ref()))
            }),
            BatchValues::IntField(f) => flow.map(|flow| AttrValue::Int(flow.index.int(*f))),
        }
    }
}

/// A column's strings, each shared from here on.
fn shared(values: Vec<String>) -> Vec<Arc<str>> {
    values.into_iter().map(Arc::from).collect()
}

/// The resource behind a `batch` handle, for one `process` call.
pub struct FlowBatch {
    flows: Vec<BatchFlow>,
    /// Flows decoded for `record`, by position.
    decoded: HashMap<u32, Flow>,
    /// (flow, change), in the order the transform made them.
    changes: Vec<(u32, Change)>,
    annotations: Vec<BatchAnnotation>,
    /// The values of the `all-labels` columns fetched in this call, by [`LabelsField`] position.
    label_values: [Option<Vec<Arc<str>>>; 2],
}

impl FlowBatch {
    pub fn new(flows: Vec<BatchFlow>) -> Self {
        FlowBatch {
            flows,
            decoded: HashMap::new(),
            changes: Vec::new(),
            annotations: Vec::new(),
            label_values: [None, None],
        }
    }

    /// The flows back, the changes made to them, and the batch annotations.
    pub fn finish(self) -> (Vec<BatchFlow>, Vec<(u32, Change)>, Vec<BatchAnnotation>) {
        (self.flows, self.changes, self.annotations)
    }

    fn flow(&self, i: u32) -> wasmtime::Result<&BatchFlow> {
        self.flows.get(i as usize).ok_or_else(|| out_of_range(i, self.flows.len()))
    }

    fn decoded(&mut self, i: u32) -> wasmtime::Result<&Flow> {
        let wire = self.flow(i)?.wire.clone();
        Ok(match self.decoded.entry(i) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Flow::decode(wire)?),
        })
    }

    fn change(&mut self, i: u32, change: Change) -> wasmtime::Result<()> {
        self.flow(i)?;
        self.changes.push((i, change));
        Ok(())
    }
}

fn out_of_range(i: u32, len: usize) -> wasmtime::Error {
    wasmtime::format_err!("flow {i} is not in the batch of {len}")
}

type R<T> = wasmtime::Result<T>;

impl types::HostBatch for GuestState {
    fn len(&mut self, this: Resource<FlowBatch>) -> R<u32> {
        Ok(self.table.get(&this)?.flows.len() as u32)
    }

    fn strings(&mut self, this: Resource<FlowBatch>, field: StringField) -> R<StringColumn> {
        let b = self.table.get(&this)?;
        // Each distinct value once; a batch has few (namespaces, names, protocols).
        let mut seen: rustc_hash::FxHashMap<&[u8], u32> = Default::default();
        let mut values = Vec::new();
        let mut at = Vec::with_capacity(b.flows.len());
        for f in &b.flows {
            let bytes = f.index.str(&f.wire, field);
            let next = values.len() as u32;
            let n = *seen.entry(bytes).or_insert(next);
            if n == next {
                values.push(String::from_utf8_lossy(bytes).into_owned());
            }
            at.push(n);
        }
        Ok(StringColumn { values, at })
    }

    fn ints(&mut self, this: Resource<FlowBatch>, field: IntField) -> R<Vec<i64>> {
        Ok(self.table.get(&this)?.flows.iter().map(|f| f.index.int(field)).collect())
    }

    fn actions(&mut self, this: Resource<FlowBatch>) -> R<Vec<Action>> {
        Ok(self.table.get(&this)?.flows.iter().map(|f| convert::action_to(f.index.action)).collect())
    }

    fn reporters(&mut self, this: Resource<FlowBatch>) -> R<Vec<Reporter>> {
        Ok(self.table.get(&this)?.flows.iter().map(|f| convert::reporter_to(f.index.reporter)).collect())
    }

    fn endpoint_types(&mut self, this: Resource<FlowBatch>, field: EndpointField) -> R<Vec<EndpointType>> {
        let b = self.table.get(&this)?;
        Ok(b.flows
            .iter()
            .map(|f| {
                convert::endpoint_to(match field {
                    EndpointField::SourceType => f.index.source_type,
                    EndpointField::DestType => f.index.dest_type,
                })
            })
            .collect())
    }

    fn labels(&mut self, this: Resource<FlowBatch>, flow: u32, field: LabelsField) -> R<Vec<String>> {
        Ok(labels(&self.table.get(&this)?.flow(flow)?.wire, field)?)
    }

    fn all_labels(&mut self, this: Resource<FlowBatch>, field: LabelsField) -> R<types::LabelsColumn> {
        let b = self.table.get_mut(&this)?;
        let want = labels_field_number(field);
        let mut seen: rustc_hash::FxHashMap<&[u8], u32> = Default::default();
        let mut values = Vec::new();
        let mut at = Vec::with_capacity(b.flows.len() * 4);
        let mut starts = Vec::with_capacity(b.flows.len() + 1);
        for f in &b.flows {
            starts.push(at.len() as u32);
            let mut r = Reader::new(&f.wire);
            while !r.is_empty() {
                match r.tag()? {
                    (n, WIRE_LEN) if n == want => {
                        let label = r.len_delimited()?;
                        let next = values.len() as u32;
                        let i = *seen.entry(label).or_insert(next);
                        if i == next {
                            values.push(String::from_utf8_lossy(label).into_owned());
                        }
                        at.push(i);
                    }
                    (_, wire_type) => r.skip(wire_type)?,
                }
            }
        }
        starts.push(at.len() as u32);
        b.label_values[field as usize] = Some(values.iter().map(|v| Arc::from(v.as_str())).collect());
        Ok(types::LabelsColumn { values, at, starts })
    }

    fn set_labels_from_column(
        &mut self,
        this: Resource<FlowBatch>,
        flow: u32,
        field: LabelsField,
        values: Vec<u32>,
    ) -> R<()> {
        let b = self.table.get_mut(&this)?;
        let column = b.label_values[field as usize]
            .as_ref()
            .ok_or_else(|| wasmtime::format_err!("set-labels-from-column before all-labels for {field:?}"))?;
        let labels = values
            .iter()
            .map(|&i| column.get(i as usize).cloned())
            .collect::<Option<Vec<Arc<str>>>>()
            .ok_or_else(|| wasmtime::format_err!("a label index past the {field:?} column"))?;
        b.change(flow, Change::Labels(field, labels))
    }

    fn all_policies(&mut self, this: Resource<FlowBatch>, field: PoliciesField) -> R<types::PoliciesColumn> {
        let b = self.table.get(&this)?;
        let want = policies_field_number(field);
        // Distinct hits by their bytes: each decoded once a batch.
        let mut seen: rustc_hash::FxHashMap<&[u8], u32> = Default::default();
        let mut hits = Vec::new();
        let mut at = Vec::with_capacity(b.flows.len() * 2);
        let mut starts = Vec::with_capacity(b.flows.len() + 1);
        for f in &b.flows {
            starts.push(at.len() as u32);
            for_each_hit(&f.wire, want, |bytes| {
                let next = hits.len() as u32;
                let i = *seen.entry(bytes).or_insert(next);
                if i == next {
                    let hit = crate::proto::PolicyHit::decode(bytes)
                        .map_err(|_| WireError("a policy hit that does not decode"))?;
                    hits.push(convert::hit_to(&hit));
                }
                at.push(i);
                Ok(())
            })?;
        }
        starts.push(at.len() as u32);
        Ok(types::PoliciesColumn { hits, at, starts })
    }

    fn policies(&mut self, this: Resource<FlowBatch>, flow: u32, field: PoliciesField) -> R<Vec<PolicyHit>> {
        // Only the list's hits are decoded, not the flow.
        let mut hits = Vec::new();
        for_each_hit(&self.table.get(&this)?.flow(flow)?.wire, policies_field_number(field), |bytes| {
            let hit =
                crate::proto::PolicyHit::decode(bytes).map_err(|_| WireError("a policy hit that does not decode"))?;
            hits.push(convert::hit_to(&hit));
            Ok(())
        })?;
        Ok(hits)
    }

    fn record(&mut self, this: Resource<FlowBatch>, flow: u32) -> R<types::Flow> {
        Ok(convert::flow_to_wit(self.table.get_mut(&this)?.decoded(flow)?))
    }

    fn set_string(&mut self, this: Resource<FlowBatch>, flow: u32, field: StringField, value: String) -> R<()> {
        self.table.get_mut(&this)?.change(flow, Change::String(field, value.into()))
    }

    fn set_strings(&mut self, this: Resource<FlowBatch>, field: StringField, values: StringColumn) -> R<()> {
        let b = self.table.get_mut(&this)?;
        if values.at.len() != b.flows.len() {
            return Err(wasmtime::format_err!("set-strings: {} entries for {} flows", values.at.len(), b.flows.len()));
        }
        let shared = shared(values.values);
        for (i, &at) in values.at.iter().enumerate() {
            if let Some(v) = shared.get(at as usize) {
                b.changes.push((i as u32, Change::String(field, v.clone())));
            }
        }
        Ok(())
    }

    fn set_int(&mut self, this: Resource<FlowBatch>, flow: u32, field: IntField, value: i64) -> R<()> {
        self.table.get_mut(&this)?.change(flow, Change::Int(field, value))
    }

    fn set_action(&mut self, this: Resource<FlowBatch>, flow: u32, value: Action) -> R<()> {
        self.table.get_mut(&this)?.change(flow, Change::Action(value))
    }

    fn set_reporter(&mut self, this: Resource<FlowBatch>, flow: u32, value: Reporter) -> R<()> {
        self.table.get_mut(&this)?.change(flow, Change::Reporter(value))
    }

    fn set_endpoint_type(
        &mut self,
        this: Resource<FlowBatch>,
        flow: u32,
        field: EndpointField,
        value: EndpointType,
    ) -> R<()> {
        self.table.get_mut(&this)?.change(flow, Change::Endpoint(field, value))
    }

    fn set_labels(&mut self, this: Resource<FlowBatch>, flow: u32, field: LabelsField, value: Vec<String>) -> R<()> {
        self.table.get_mut(&this)?.change(flow, Change::Labels(field, value.into_iter().map(Arc::from).collect()))
    }

    fn set_policies(
        &mut self,
        this: Resource<FlowBatch>,
        flow: u32,
        field: PoliciesField,
        value: Vec<PolicyHit>,
    ) -> R<()> {
        self.table.get_mut(&this)?.change(flow, Change::Policies(field, value))
    }

    fn annotate_strings(&mut self, this: Resource<FlowBatch>, key: String, values: StringColumn) -> R<()> {
        let values = BatchValues::Strings { values: shared(values.values), at: values.at };
        self.table.get_mut(&this)?.annotations.push(BatchAnnotation::new(key, values));
        Ok(())
    }

    fn annotate_string_lists(&mut self, this: Resource<FlowBatch>, key: String, values: types::LabelsColumn) -> R<()> {
        let values = BatchValues::StringLists { values: shared(values.values), at: values.at, starts: values.starts };
        self.table.get_mut(&this)?.annotations.push(BatchAnnotation::new(key, values));
        Ok(())
    }

    fn annotate_ints(&mut self, this: Resource<FlowBatch>, key: String, values: Vec<i64>) -> R<()> {
        self.table.get_mut(&this)?.annotations.push(BatchAnnotation::new(key, BatchValues::Ints(values)));
        Ok(())
    }

    fn annotate_string_field(&mut self, this: Resource<FlowBatch>, key: String, field: StringField) -> R<()> {
        let values = BatchValues::StringField(field);
        self.table.get_mut(&this)?.annotations.push(BatchAnnotation::new(key, values));
        Ok(())
    }

    fn annotate_int_field(&mut self, this: Resource<FlowBatch>, key: String, field: IntField) -> R<()> {
        let values = BatchValues::IntField(field);
        self.table.get_mut(&this)?.annotations.push(BatchAnnotation::new(key, values));
        Ok(())
    }

    fn drop(&mut self, this: Resource<FlowBatch>) -> R<()> {
        // The host owns the batch and takes it back after the call; a guest's drop of its borrow is a no-op.
        let _ = this;
        Ok(())
    }
}

/// `flow` with `changes` applied (in order; a later change to a field wins). An `unknown` enum keeps the flow's
/// number; in a policy list, the number of the hit at the same position.
pub fn apply(flow: &mut Flow, changes: impl IntoIterator<Item = Change>) {
    let key = flow.key.get_or_insert_with(FlowKey::default);
    for change in changes {
        match change {
            Change::String(field, v) => {
                *match field {
                    StringField::SourceName => &mut key.source_name,
                    StringField::SourceNamespace => &mut key.source_namespace,
                    StringField::DestName => &mut key.dest_name,
                    StringField::DestNamespace => &mut key.dest_namespace,
                    StringField::DestServiceName => &mut key.dest_service_name,
                    StringField::DestServiceNamespace => &mut key.dest_service_namespace,
                    StringField::DestServicePortName => &mut key.dest_service_port_name,
                    StringField::Proto => &mut key.proto,
                } = v.to_string()
            }
            Change::Int(field, v) => {
                *match field {
                    IntField::DestPort => &mut key.dest_port,
                    IntField::DestServicePort => &mut key.dest_service_port,
                    IntField::StartTime => &mut flow.start_time,
                    IntField::EndTime => &mut flow.end_time,
                    IntField::PacketsIn => &mut flow.packets_in,
                    IntField::PacketsOut => &mut flow.packets_out,
                    IntField::BytesIn => &mut flow.bytes_in,
                    IntField::BytesOut => &mut flow.bytes_out,
                    IntField::NumConnectionsStarted => &mut flow.num_connections_started,
                    IntField::NumConnectionsCompleted => &mut flow.num_connections_completed,
                    IntField::NumConnectionsLive => &mut flow.num_connections_live,
                } = v
            }
            Change::Action(a) => key.action = convert::action_from(a).unwrap_or(key.action),
            Change::Reporter(r) => key.reporter = convert::reporter_from(r).unwrap_or(key.reporter),
            Change::Endpoint(EndpointField::SourceType, e) => {
                key.source_type = convert::endpoint_from(e).unwrap_or(key.source_type)
            }
            Change::Endpoint(EndpointField::DestType, e) => {
                key.dest_type = convert::endpoint_from(e).unwrap_or(key.dest_type)
            }
            Change::Labels(field, v) => {
                *match field {
                    LabelsField::SourceLabels => &mut flow.source_labels,
                    LabelsField::DestLabels => &mut flow.dest_labels,
                } = v.iter().map(|s| s.to_string()).collect()
            }
            Change::Policies(field, v) => {
                let trace = key.policies.get_or_insert_with(Default::default);
                let list = match field {
                    PoliciesField::EnforcedPolicies => &mut trace.enforced_policies,
                    PoliciesField::PendingPolicies => &mut trace.pending_policies,
                };
                *list = convert::hits_from(v, list);
            }
        }
    }
}

/// The encoded flow with `changes` applied, written straight from `wire` without decoding it: fields nobody
/// changed are copied as they are, changed ones are written in their place, in field-number order and without
/// proto3 defaults, as Go's `proto.Marshal` and prost write them (the renderer's fast path expects that order).
/// Only a policy-list change decodes that list (to give `unknown` kinds and actions back their numbers).
pub fn splice(wire: &[u8], changes: &[Change]) -> Result<Vec<u8>, WireError> {
    use prost::encoding::{encode_key, encode_varint};

    /// What a changed field becomes, by field number: top-level (`flow`) and in the key.
    #[derive(Default)]
    struct Edits<'c> {
        flow: Vec<(u32, Field<'c>)>,
        key: Vec<(u32, Field<'c>)>,
        policies: Vec<(PoliciesField, &'c [PolicyHit])>,
    }
    enum Field<'c> {
        Varint(u64),
        Bytes(&'c [u8]),
        /// A message field: written even when empty (it is present), as prost writes `Some(default)`.
        Message(Vec<u8>),
        Strings(&'c [Arc<str>]),
    }
    fn set<'c>(list: &mut Vec<(u32, Field<'c>)>, n: u32, f: Field<'c>) {
        list.retain(|(m, _)| *m != n);
        list.push((n, f));
    }
    fn write(n: u32, f: &Field<'_>, out: &mut Vec<u8>) {
        match f {
            Field::Varint(0) => {}
            Field::Varint(v) => {
                encode_key(n, prost::encoding::WireType::Varint, out);
                encode_varint(*v, out);
            }
            Field::Bytes([]) => {}
            Field::Bytes(b) => {
                encode_key(n, prost::encoding::WireType::LengthDelimited, out);
                encode_varint(b.len() as u64, out);
                out.extend_from_slice(b);
            }
            Field::Message(b) => {
                encode_key(n, prost::encoding::WireType::LengthDelimited, out);
                encode_varint(b.len() as u64, out);
                out.extend_from_slice(b);
            }
            Field::Strings(list) => {
                for s in list.iter() {
                    encode_key(n, prost::encoding::WireType::LengthDelimited, out);
                    encode_varint(s.len() as u64, out);
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
    }
    /// `msg` with the fields in `edits` replaced, in field order.
    fn rewrite(msg: &[u8], edits: &mut [(u32, Field<'_>)], out: &mut Vec<u8>) -> Result<(), WireError> {
        edits.sort_by_key(|(n, _)| *n);
        let mut next = 0;
        let mut r = Reader::new(msg);
        while !r.is_empty() {
            let start = msg.len() - r.remaining();
            let (n, wire_type) = r.tag()?;
            r.skip(wire_type)?;
            while next < edits.len() && edits[next].0 < n {
                write(edits[next].0, &edits[next].1, out);
                next += 1;
            }
            if edits.iter().any(|(m, _)| *m == n) {
                continue;
            }
            out.extend_from_slice(&msg[start..msg.len() - r.remaining()]);
        }
        for (n, f) in &edits[next..] {
            write(*n, f, out);
        }
        Ok(())
    }

    let mut e = Edits::default();
    for change in changes {
        match *change {
            Change::String(field, ref v) => set(&mut e.key, KEY_STRINGS[field as usize], Field::Bytes(v.as_bytes())),
            Change::Int(IntField::DestPort, v) => set(&mut e.key, 7, Field::Varint(v as u64)),
            Change::Int(IntField::DestServicePort, v) => set(&mut e.key, 11, Field::Varint(v as u64)),
            Change::Int(field, v) => {
                // start_time, end_time: fields 2, 3; the counters: 6 to 12.
                let n = match field as u32 {
                    i @ 2..=3 => i,
                    i => i + 2,
                };
                set(&mut e.flow, n, Field::Varint(v as u64))
            }
            Change::Action(a) => {
                if let Some(n) = convert::action_from(a) {
                    set(&mut e.key, 14, Field::Varint(n as i64 as u64))
                }
            }
            Change::Reporter(r) => {
                if let Some(n) = convert::reporter_from(r) {
                    set(&mut e.key, 13, Field::Varint(n as i64 as u64))
                }
            }
            Change::Endpoint(field, t) => {
                if let Some(n) = convert::endpoint_from(t) {
                    let number = if field == EndpointField::SourceType { 3 } else { 6 };
                    set(&mut e.key, number, Field::Varint(n as i64 as u64))
                }
            }
            Change::Labels(field, ref v) => {
                set(&mut e.flow, if field == LabelsField::SourceLabels { 4 } else { 5 }, Field::Strings(v))
            }
            Change::Policies(field, ref v) => {
                e.policies.retain(|(f, _)| *f != field);
                e.policies.push((field, v));
            }
        }
    }
    // The key's current bytes (the last occurrence, as the index reads it).
    let mut key: &[u8] = &[];
    let mut r = Reader::new(wire);
    while !r.is_empty() {
        match r.tag()? {
            (1, WIRE_LEN) => key = r.len_delimited()?,
            (_, wire_type) => r.skip(wire_type)?,
        }
    }
    if !e.policies.is_empty() {
        let mut trace = crate::proto::PolicyTrace::default();
        let mut r = Reader::new(key);
        while !r.is_empty() {
            match r.tag()? {
                (15, WIRE_LEN) => {
                    trace.merge(r.len_delimited()?).map_err(|_| WireError("a policy trace that does not decode"))?
                }
                (_, wire_type) => r.skip(wire_type)?,
            }
        }
        for (field, hits) in e.policies.drain(..) {
            let list = match field {
                PoliciesField::EnforcedPolicies => &mut trace.enforced_policies,
                PoliciesField::PendingPolicies => &mut trace.pending_policies,
            };
            *list = convert::hits_from(hits.to_vec(), list);
        }
        set(&mut e.key, 15, Field::Message(trace.encode_to_vec()));
    }
    let mut new_key = Vec::with_capacity(key.len() + 64);
    if !e.key.is_empty() {
        rewrite(key, &mut e.key, &mut new_key)?;
        e.flow.push((1, Field::Message(std::mem::take(&mut new_key))));
    }
    let mut out = Vec::with_capacity(wire.len() + 64);
    rewrite(wire, &mut e.flow, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flowgen::FlowGen;

    /// The index reads what prost reads, field by field.
    #[test]
    fn the_index_agrees_with_prost_for_every_field() {
        let strings = [
            StringField::SourceName,
            StringField::SourceNamespace,
            StringField::DestName,
            StringField::DestNamespace,
            StringField::DestServiceName,
            StringField::DestServiceNamespace,
            StringField::DestServicePortName,
            StringField::Proto,
        ];
        for flow in (FlowGen { seed: 9, keys: 200 }).bucket(1_764_970_845) {
            let wire = flow.encode_to_vec();
            let ix = FlowIndex::new(&wire).unwrap();
            let k = flow.key.clone().unwrap();
            let want = [
                &k.source_name,
                &k.source_namespace,
                &k.dest_name,
                &k.dest_namespace,
                &k.dest_service_name,
                &k.dest_service_namespace,
                &k.dest_service_port_name,
                &k.proto,
            ];
            for (field, want) in strings.into_iter().zip(want) {
                assert_eq!(ix.str(&wire, field), want.as_bytes(), "{field:?}");
            }
            let ints = [
                (IntField::DestPort, k.dest_port),
                (IntField::DestServicePort, k.dest_service_port),
                (IntField::StartTime, flow.start_time),
                (IntField::EndTime, flow.end_time),
                (IntField::PacketsIn, flow.packets_in),
                (IntField::PacketsOut, flow.packets_out),
                (IntField::BytesIn, flow.bytes_in),
                (IntField::BytesOut, flow.bytes_out),
                (IntField::NumConnectionsStarted, flow.num_connections_started),
                (IntField::NumConnectionsCompleted, flow.num_connections_completed),
                (IntField::NumConnectionsLive, flow.num_connections_live),
            ];
            for (field, want) in ints {
                assert_eq!(ix.int(field), want, "{field:?}");
            }
            assert_eq!(
                (ix.action, ix.reporter, ix.source_type, ix.dest_type),
                (k.action, k.reporter, k.source_type, k.dest_type)
            );
            let trace = k.policies.clone().unwrap_or_default();
            for (want, list) in [(1, &trace.enforced_policies), (2, &trace.pending_policies)] {
                let mut hits = Vec::new();
                for_each_hit(&wire, want, |b| {
                    hits.push(crate::proto::PolicyHit::decode(b).unwrap());
                    Ok(())
                })
                .unwrap();
                assert_eq!(&hits, list);
            }
            assert_eq!(labels(&wire, LabelsField::SourceLabels).unwrap(), flow.source_labels);
            assert_eq!(labels(&wire, LabelsField::DestLabels).unwrap(), flow.dest_labels);
        }
    }

    /// Splicing changes into the bytes gives exactly what decoding, assigning and encoding with prost gives.
    #[test]
    fn splicing_changes_into_the_bytes_equals_prost_decode_apply_encode() {
        let flows = FlowGen { seed: 11, keys: 300 };
        let hit = |name: &str| PolicyHit {
            kind: types::PolicyKind::Unknown,
            namespace: "ns".into(),
            name: name.into(),
            tier: "default".into(),
            action: Action::Deny,
            policy_index: 3,
            rule_index: -1,
            trigger: None,
        };
        let change_sets: Vec<Vec<Change>> = vec![
            vec![],
            vec![Change::String(StringField::SourceName, "anon-1".into())],
            vec![
                Change::String(StringField::SourceNamespace, "a".into()),
                Change::String(StringField::Proto, "".into()),
                Change::String(StringField::SourceNamespace, "b".into()),
            ],
            vec![
                Change::Labels(LabelsField::SourceLabels, vec!["app=x".into()]),
                Change::Labels(LabelsField::DestLabels, vec![]),
            ],
            vec![
                Change::Int(IntField::BytesIn, 0),
                Change::Int(IntField::NumConnectionsLive, -5),
                Change::Int(IntField::StartTime, 7),
            ],
            vec![Change::Int(IntField::DestPort, 443), Change::Int(IntField::DestServicePort, 0)],
            vec![
                Change::Action(Action::Deny),
                Change::Reporter(Reporter::Unknown),
                Change::Endpoint(EndpointField::DestType, EndpointType::Network),
            ],
            vec![
                Change::Action(Action::Unspecified),
                Change::Endpoint(EndpointField::SourceType, EndpointType::Unknown),
            ],
            vec![Change::Policies(PoliciesField::EnforcedPolicies, vec![hit("a"), hit("b")])],
            vec![
                Change::Policies(PoliciesField::PendingPolicies, vec![]),
                Change::String(StringField::DestName, "d".into()),
            ],
        ];
        for i in 0..300 {
            let flow = flows.flow(i, 1_764_970_845);
            let wire = flow.encode_to_vec();
            for changes in &change_sets {
                let mut want = flow.clone();
                apply(&mut want, changes.clone());
                let got = splice(&wire, changes).unwrap();
                assert_eq!(got, want.encode_to_vec(), "flow {i}, {changes:?}");
            }
        }
    }

    #[test]
    fn bytes_that_are_not_a_flow_are_refused() {
        assert!(FlowIndex::new(&[0x0a, 0x05, 0x01]).is_err(), "truncated key");
        assert!(FlowIndex::new(&[0x0a, 0x02, 0x0a, 0x05]).is_err(), "a key string longer than the key");
        assert!(FlowIndex::new(&[0x10, 0x01, 0x08]).is_err(), "truncated varint");
    }

    #[test]
    fn changes_apply_in_order_and_unknown_enums_keep_their_numbers() {
        let mut flow = FlowGen { seed: 4, keys: 1 }.flow(0, 0);
        let key = flow.key.as_mut().unwrap();
        key.action = 42;
        key.policies.as_mut().unwrap().enforced_policies[0].kind = 12;
        let original = flow.clone();
        let mut hits: Vec<PolicyHit> = original.key.as_ref().unwrap().policies.as_ref().unwrap().enforced_policies[..1]
            .iter()
            .map(convert::hit_to)
            .collect();
        hits[0].name = "x".into();
        apply(
            &mut flow,
            [
                Change::String(StringField::SourceName, "a".into()),
                Change::String(StringField::SourceName, "b".into()),
                Change::Action(Action::Unknown),
                Change::Int(IntField::BytesIn, 7),
                Change::Labels(LabelsField::DestLabels, vec!["k=v".into()]),
                Change::Policies(PoliciesField::EnforcedPolicies, hits),
            ],
        );
        let key = flow.key.as_ref().unwrap();
        assert_eq!(key.source_name, "b");
        assert_eq!(key.action, 42, "unknown keeps the number");
        assert_eq!(flow.bytes_in, 7);
        assert_eq!(flow.dest_labels, vec!["k=v".to_string()]);
        let hit = &key.policies.as_ref().unwrap().enforced_policies[0];
        assert_eq!((hit.kind, hit.name.as_str()), (12, "x"));
    }
}
