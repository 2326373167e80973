//! One pass over each flow's protobuf bytes, filling candidate B's typed records of offsets. Both candidates'
//! hosts keep a batch this way: B hands it to the guest as it is, A answers its getters from it.

use flowgate::wire::{WIRE_I32, WIRE_I64, WIRE_LEN, WIRE_VARINT, WireError};

use crate::b::types::{Action, Batch, EndpointType, FlowView, HitView, PolicyKind, Reporter, Run, Span};

/// `flowgate::wire::Reader` with a one-byte fast path for varints (tags, lengths, enums and most numbers of a
/// flow fit one byte). Measured: it halves the index pass; the host's `Reader` would take the same path.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_long(),
        }
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let &b = self.buf.get(self.pos).ok_or(WireError("truncated varint"))?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(WireError("varint overflows 64 bits"));
            }
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError("varint longer than 10 bytes"))
    }

    #[inline(always)]
    fn tag(&mut self) -> Result<(u32, u8), WireError> {
        let tag = u32::try_from(self.varint()?).map_err(|_| WireError("field key beyond 32 bits"))?;
        if tag >> 3 == 0 {
            return Err(WireError("field number 0"));
        }
        Ok((tag >> 3, (tag & 7) as u8))
    }

    #[inline(always)]
    fn len_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()? as usize;
        let end = self.pos.checked_add(len).filter(|&e| e <= self.buf.len()).ok_or(WireError("truncated field"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn skip(&mut self, wire_type: u8) -> Result<(), WireError> {
        match wire_type {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_LEN => self.len_delimited().map(drop),
            WIRE_I64 | WIRE_I32 => {
                let n = if wire_type == WIRE_I64 { 8 } else { 4 };
                self.pos = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(WireError("truncated"))?;
                Ok(())
            }
            _ => Err(WireError("unsupported wire type")),
        }
    }
}

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
    let v = scan(bytes.as_slice(), base, Some((hits, labels)))?;
    flows.push(v);
    Ok(())
}

/// One flow's scalars and strings, spans relative to `wire`; its label and policy runs left empty (skipped
/// unread). Candidate A's host indexes a flow this way on the first getter that touches it.
pub fn shallow(wire: &[u8]) -> Result<FlowView, WireError> {
    scan(wire, 0, None)
}

type Tables<'t> = (&'t mut Vec<HitView>, &'t mut Vec<Span>);

/// The flow at `all[base..]`, its lists appended to `tables` when given.
fn scan(all: &[u8], base: usize, mut tables: Option<Tables<'_>>) -> Result<FlowView, WireError> {
    let mut v = empty_view();
    let mut r = Reader::new(&all[base..]);
    while !r.is_empty() {
        match r.tag()? {
            (1, WIRE_LEN) => key(all, r.len_delimited()?, &mut v, tables.as_mut().map(|t| &mut *t.0))?,
            (2, WIRE_VARINT) => v.start_time = r.varint()? as i64,
            (3, WIRE_VARINT) => v.end_time = r.varint()? as i64,
            (n @ (4 | 5), WIRE_LEN) => {
                let label = r.len_delimited()?;
                if let Some((_, labels)) = tables.as_mut() {
                    let run = if n == 4 { &mut v.source_labels } else { &mut v.dest_labels };
                    if run.len == 0 {
                        run.start = labels.len() as u32;
                    }
                    run.len += 1;
                    labels.push(span(all, label));
                }
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
    Ok(v)
}

fn key(all: &[u8], key: &[u8], v: &mut FlowView, hits: Option<&mut Vec<HitView>>) -> Result<(), WireError> {
    let mut hits = hits;
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
                if let Some(hits) = hits.as_deref_mut() {
                    v.enforced_policies = policies(all, trace, 1, hits)?;
                    v.pending_policies = policies(all, trace, 2, hits)?;
                }
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
