//! One pass over each flow's protobuf bytes, filling candidate B's typed records of offsets. Both candidates'
//! hosts keep a batch this way: B hands it to the guest as it is, A answers its getters from it.

use flowgate::wire::{Reader, WIRE_LEN, WIRE_VARINT, WireError};

use crate::b::types::{Action, Batch, EndpointType, FlowView, HitView, PolicyKind, Reporter, Run, Span};

/// An empty batch, its tables sized for `flows` flows.
pub fn batch(flows: usize) -> Batch {
    Batch {
        bytes: Vec::with_capacity(flows * 320),
        flows: Vec::with_capacity(flows),
        hits: Vec::with_capacity(flows * 2),
        labels: Vec::with_capacity(flows * 4),
    }
}

pub fn clear(b: &mut Batch) {
    b.bytes.clear();
    b.flows.clear();
    b.hits.clear();
    b.labels.clear();
}

/// The string a span points at (empty when it is not UTF-8).
pub fn text(bytes: &[u8], s: Span) -> &str {
    std::str::from_utf8(&bytes[s.start as usize..(s.start + s.len) as usize]).unwrap_or_default()
}

fn action(n: u64) -> Action {
    match n {
        0 => Action::Unspecified,
        1 => Action::Allow,
        2 => Action::Deny,
        3 => Action::Pass,
        _ => Action::Unknown,
    }
}

fn reporter(n: u64) -> Reporter {
    match n {
        0 => Reporter::Unspecified,
        1 => Reporter::Src,
        2 => Reporter::Dst,
        _ => Reporter::Unknown,
    }
}

fn endpoint(n: u64) -> EndpointType {
    match n {
        0 => EndpointType::Unspecified,
        1 => EndpointType::WorkloadEndpoint,
        2 => EndpointType::HostEndpoint,
        3 => EndpointType::NetworkSet,
        4 => EndpointType::Network,
        _ => EndpointType::Unknown,
    }
}

fn kind(n: u64) -> PolicyKind {
    use PolicyKind::*;
    const KINDS: [PolicyKind; 12] = [
        Unspecified,
        CalicoNetworkPolicy,
        GlobalNetworkPolicy,
        StagedNetworkPolicy,
        StagedGlobalNetworkPolicy,
        StagedKubernetesNetworkPolicy,
        NetworkPolicy,
        AdminNetworkPolicy,
        BaselineAdminNetworkPolicy,
        Profile,
        EndOfTier,
        ClusterNetworkPolicy,
    ];
    KINDS.get(n as usize).copied().unwrap_or(Unknown)
}

const NO_SPAN: Span = Span { start: 0, len: 0 };
const NO_RUN: Run = Run { start: 0, len: 0 };

fn empty_view() -> FlowView {
    FlowView {
        source_name: NO_SPAN,
        source_namespace: NO_SPAN,
        source_type: EndpointType::Unspecified,
        dest_name: NO_SPAN,
        dest_namespace: NO_SPAN,
        dest_type: EndpointType::Unspecified,
        dest_port: 0,
        dest_service_name: NO_SPAN,
        dest_service_namespace: NO_SPAN,
        dest_service_port_name: NO_SPAN,
        dest_service_port: 0,
        proto: NO_SPAN,
        reporter: Reporter::Unspecified,
        action: Action::Unspecified,
        enforced_policies: NO_RUN,
        pending_policies: NO_RUN,
        start_time: 0,
        end_time: 0,
        source_labels: NO_RUN,
        dest_labels: NO_RUN,
        packets_in: 0,
        packets_out: 0,
        bytes_in: 0,
        bytes_out: 0,
        num_connections_started: 0,
        num_connections_completed: 0,
        num_connections_live: 0,
    }
}

/// Where `part` (a slice of `all`) starts in `all`.
fn span(all: &[u8], part: &[u8]) -> Span {
    Span { start: (part.as_ptr() as usize - all.as_ptr() as usize) as u32, len: part.len() as u32 }
}

/// Appends one encoded `goldmane.Flow` to the batch. Repeated fields are assumed contiguous and in field order,
/// as every protobuf encoder writes them (a lab simplification: a real host would fall back to a slow path).
pub fn push(b: &mut Batch, wire: &[u8]) -> Result<(), WireError> {
    let base = b.bytes.len();
    b.bytes.extend_from_slice(wire);
    let Batch { bytes, flows, hits, labels } = b;
    let all = bytes.as_slice();
    let mut v = empty_view();
    let mut r = Reader::new(&all[base..]);
    while !r.is_empty() {
        match r.tag()? {
            (1, WIRE_LEN) => key(all, r.len_delimited()?, &mut v, hits)?,
            (2, WIRE_VARINT) => v.start_time = r.varint()? as i64,
            (3, WIRE_VARINT) => v.end_time = r.varint()? as i64,
            (n @ (4 | 5), WIRE_LEN) => {
                let run = if n == 4 { &mut v.source_labels } else { &mut v.dest_labels };
                if run.len == 0 {
                    run.start = labels.len() as u32;
                }
                run.len += 1;
                labels.push(span(all, r.len_delimited()?));
            }
            (n @ 6..=12, WIRE_VARINT) => {
                let x = r.varint()? as i64;
                *[
                    &mut v.packets_in,
                    &mut v.packets_out,
                    &mut v.bytes_in,
                    &mut v.bytes_out,
                    &mut v.num_connections_started,
                    &mut v.num_connections_completed,
                    &mut v.num_connections_live,
                ][n as usize - 6] = x;
            }
            (_, wire_type) => r.skip(wire_type)?,
        }
    }
    flows.push(v);
    Ok(())
}

fn key(all: &[u8], key: &[u8], v: &mut FlowView, hits: &mut Vec<HitView>) -> Result<(), WireError> {
    let mut r = Reader::new(key);
    while !r.is_empty() {
        match r.tag()? {
            (n @ (1 | 2 | 4 | 5 | 8 | 9 | 10 | 12), WIRE_LEN) => {
                let s = span(all, r.len_delimited()?);
                match n {
                    1 => v.source_name = s,
                    2 => v.source_namespace = s,
                    4 => v.dest_name = s,
                    5 => v.dest_namespace = s,
                    8 => v.dest_service_name = s,
                    9 => v.dest_service_namespace = s,
                    10 => v.dest_service_port_name = s,
                    _ => v.proto = s,
                }
            }
            (3, WIRE_VARINT) => v.source_type = endpoint(r.varint()?),
            (6, WIRE_VARINT) => v.dest_type = endpoint(r.varint()?),
            (7, WIRE_VARINT) => v.dest_port = r.varint()? as i64,
            (11, WIRE_VARINT) => v.dest_service_port = r.varint()? as i64,
            (13, WIRE_VARINT) => v.reporter = reporter(r.varint()?),
            (14, WIRE_VARINT) => v.action = action(r.varint()?),
            (15, WIRE_LEN) => {
                let trace = r.len_delimited()?;
                v.enforced_policies = policies(all, trace, 1, hits)?;
                v.pending_policies = policies(all, trace, 2, hits)?;
            }
            (_, wire_type) => r.skip(wire_type)?,
        }
    }
    Ok(())
}

/// The hits of list `number` of a `PolicyTrace`, appended as one run; their triggers go after it.
fn policies(all: &[u8], trace: &[u8], number: u32, hits: &mut Vec<HitView>) -> Result<Run, WireError> {
    let start = hits.len();
    let mut triggers: Vec<(usize, &[u8])> = Vec::new();
    let mut r = Reader::new(trace);
    while !r.is_empty() {
        match r.tag()? {
            (n, WIRE_LEN) if n == number => {
                let (h, trigger) = hit(all, r.len_delimited()?)?;
                if let Some(t) = trigger {
                    triggers.push((hits.len(), t));
                }
                hits.push(h);
            }
            (_, wire_type) => r.skip(wire_type)?,
        }
    }
    let run = Run { start: start as u32, len: (hits.len() - start) as u32 };
    for (at, bytes) in triggers {
        let (t, _) = hit(all, bytes)?;
        hits[at].trigger = Some(hits.len() as u32);
        hits.push(t);
    }
    Ok(run)
}

fn hit<'a>(all: &[u8], bytes: &'a [u8]) -> Result<(HitView, Option<&'a [u8]>), WireError> {
    let mut h = HitView {
        kind: PolicyKind::Unspecified,
        namespace: NO_SPAN,
        name: NO_SPAN,
        tier: NO_SPAN,
        action: Action::Unspecified,
        policy_index: 0,
        rule_index: 0,
        trigger: None,
    };
    let mut trigger = None;
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        match r.tag()? {
            (1, WIRE_VARINT) => h.kind = kind(r.varint()?),
            (2, WIRE_LEN) => h.namespace = span(all, r.len_delimited()?),
            (3, WIRE_LEN) => h.name = span(all, r.len_delimited()?),
            (4, WIRE_LEN) => h.tier = span(all, r.len_delimited()?),
            (5, WIRE_VARINT) => h.action = action(r.varint()?),
            (6, WIRE_VARINT) => h.policy_index = r.varint()? as i64,
            (7, WIRE_VARINT) => h.rule_index = r.varint()? as i64,
            (8, WIRE_LEN) => trigger = Some(r.len_delimited()?),
            (_, wire_type) => r.skip(wire_type)?,
        }
    }
    Ok((h, trigger))
}
