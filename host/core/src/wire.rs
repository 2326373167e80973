//! Minimal protobuf wire reading for the hot path: the source takes each `FlowResult` as bytes, and the flow's
//! start, end and key are read from them without decoding (or allocating) the rest.

use bytes::Bytes;

pub const WIRE_VARINT: u8 = 0;
pub const WIRE_I64: u8 = 1;
pub const WIRE_LEN: u8 = 2;
pub const WIRE_I32: u8 = 5;

/// Bytes that are not valid protobuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub &'static str);

/// A cursor over encoded fields.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub fn varint(&mut self) -> Result<u64, WireError> {
        // Tags, lengths, enums and most numbers of a flow fit one byte (measured: half the time of an index pass).
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
                // As prost: a tenth byte may only carry the 64th bit.
                return Err(WireError("varint overflows 64 bits"));
            }
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError("varint longer than 10 bytes"))
    }

    /// Consumes the next byte if it is `byte` (a one-byte tag: the next element of a repeated field).
    #[inline]
    pub fn take_if(&mut self, byte: u8) -> bool {
        let next = self.buf.get(self.pos) == Some(&byte);
        self.pos += usize::from(next);
        next
    }

    /// (field number, wire type).
    #[inline]
    pub fn tag(&mut self) -> Result<(u32, u8), WireError> {
        // As prost: the key must fit 32 bits, so field numbers stop at 2^29 - 1.
        let tag = u32::try_from(self.varint()?).map_err(|_| WireError("field key beyond 32 bits"))?;
        let number = tag >> 3;
        if number == 0 {
            return Err(WireError("field number 0"));
        }
        Ok((number, (tag & 7) as u8))
    }

    #[inline]
    pub fn len_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let len = usize::try_from(self.varint()?).map_err(|_| WireError("length overflow"))?;
        let end = self.pos.checked_add(len).filter(|&e| e <= self.buf.len()).ok_or(WireError("truncated field"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// A length-delimited field, and the bytes from its start to the end of the buffer (so a short field can be
    /// copied a fixed number of bytes at a time).
    #[inline]
    pub fn len_delimited_and_rest(&mut self) -> Result<(&'a [u8], &'a [u8]), WireError> {
        let field = self.len_delimited()?;
        Ok((field, &self.buf[self.pos - field.len()..]))
    }

    #[inline]
    pub fn skip(&mut self, wire_type: u8) -> Result<(), WireError> {
        let n = match wire_type {
            WIRE_VARINT => return self.varint().map(drop),
            WIRE_LEN => return self.len_delimited().map(drop),
            WIRE_I64 => 8,
            WIRE_I32 => 4,
            _ => return Err(WireError("unsupported wire type")),
        };
        self.pos = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(WireError("truncated field"))?;
        Ok(())
    }
}

/// Flows read together from the stream, numbered for the stream cursor (0 when no cursor is kept).
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    pub seq: u64,
    pub flows: Vec<FlowBytes>,
}

/// A flow handed on by the source: its encoded `goldmane.Flow` and how it reached the gateway. What the source
/// read besides (times, key, counters) stays there: a chunk is written once into fresh memory and read on
/// another thread, 40 bytes a flow instead of the whole [`RawFlow`]'s 144.
#[derive(Debug, Clone)]
pub struct FlowBytes {
    pub wire: Bytes,
    pub origin: Origin,
}

impl From<RawFlow> for FlowBytes {
    fn from(raw: RawFlow) -> Self {
        FlowBytes { wire: raw.wire, origin: raw.origin }
    }
}

/// A flow's counters, in field order: packets in/out, bytes in/out, connections started/completed/live.
pub type Counters = [i64; 7];

/// How a flow reached the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Origin {
    /// Streamed by Goldmane (live or backfill): the usual case.
    #[default]
    Stream,
    /// Found by reconciliation: Goldmane holds it but never streamed it live (it arrived after its bucket rolled
    /// over).
    Late,
    /// Found by reconciliation: the growth of a key already exported for this bucket; its counters are the
    /// difference, so sums over records stay right.
    Delta,
}

impl Origin {
    /// The `flowgate.reconciled` attribute's value, for flows reconciliation found.
    pub fn attribute(self) -> Option<&'static str> {
        match self {
            Origin::Stream => None,
            Origin::Late => Some("late"),
            Origin::Delta => Some("delta"),
        }
    }
}

/// A flow as received: its encoded `goldmane.Flow`, plus what routing and dedupe need.
#[derive(Debug, Clone)]
pub struct RawFlow {
    /// The encoded `goldmane.Flow` (the gRPC message, narrowed in place to its flow: no copy).
    pub wire: Bytes,
    pub start_time: i64,
    pub end_time: i64,
    /// Where the encoded `FlowKey` is in `wire` (empty when absent): see [`RawFlow::key`].
    key: std::ops::Range<u32>,
    /// Its counters (fields 6 to 12), read in the same pass.
    pub counters: Counters,
    pub origin: Origin,
}

impl RawFlow {
    /// Reads an encoded `goldmane.Flow`: its times, key and counters, in one pass.
    pub fn parse(wire: Bytes, origin: Origin) -> Result<RawFlow, WireError> {
        let (mut start_time, mut end_time) = (0, 0);
        let mut counters: Counters = [0; 7];
        let mut key = 0..0;
        let mut r = Reader::new(&wire);
        while !r.is_empty() {
            match r.tag()? {
                (1, WIRE_LEN) => {
                    let len = r.len_delimited()?.len();
                    // A message is at most `u32::MAX` bytes (gRPC's length prefix), so its offsets fit.
                    key = (r.pos - len) as u32..r.pos as u32;
                }
                (2, WIRE_VARINT) => start_time = r.varint()? as i64,
                (3, WIRE_VARINT) => end_time = r.varint()? as i64,
                (n @ 6..=12, WIRE_VARINT) => counters[n as usize - 6] = r.varint()? as i64,
                (1..=3 | 6..=12, _) => return Err(WireError("Flow field with the wrong wire type")),
                (_, wire_type) => r.skip(wire_type)?,
            }
        }
        Ok(RawFlow { wire, start_time, end_time, key, counters, origin })
    }

    /// The encoded `FlowKey`: the identity dedupe hashes. Goldmane encodes a key the same way every time it sends
    /// it, so equal keys have equal bytes.
    pub fn key(&self) -> &[u8] {
        &self.wire[self.key.start as usize..self.key.end as usize]
    }
}

/// Narrows an encoded `FlowResult` to its flow (field 2) in place: no copy, and no reference count touched (the
/// message's buffer is shared with the rest of the read, and other threads drop flows of it). `None` when it
/// carries no flow.
pub fn flow_of_result(mut result: Bytes) -> Result<Option<RawFlow>, WireError> {
    let mut r = Reader::new(&result);
    let mut flow = None;
    while !r.is_empty() {
        match r.tag()? {
            (2, WIRE_LEN) => {
                let len = r.len_delimited()?.len();
                // Several occurrences of a message field merge; in practice there is one. Keep the last.
                flow = Some((r.pos - len, len));
            }
            (1, WIRE_VARINT) => r.skip(WIRE_VARINT)?,
            // A known field with another wire type is invalid (prost refuses it too).
            (1 | 2, _) => return Err(WireError("FlowResult field with the wrong wire type")),
            (_, wire_type) => r.skip(wire_type)?,
        }
    }
    let Some((start, len)) = flow else { return Ok(None) };
    bytes::Buf::advance(&mut result, start);
    result.truncate(len);
    RawFlow::parse(result, Origin::Stream).map(Some)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::proto::{Flow, FlowKey, FlowResult};

    #[test]
    fn splits_a_flow_result_without_decoding_it() {
        let flow = Flow {
            key: Some(FlowKey { source_name: "a-*".into(), ..FlowKey::default() }),
            start_time: 1_764_970_845,
            end_time: 1_764_970_860,
            source_labels: vec!["x=y".into()],
            ..Flow::default()
        };
        let result = Bytes::from(FlowResult { id: 7, flow: Some(flow.clone()) }.encode_to_vec());
        let raw = flow_of_result(result).unwrap().unwrap();
        assert_eq!(raw.start_time, 1_764_970_845);
        assert_eq!(raw.end_time, 1_764_970_860);
        assert_eq!(Flow::decode(raw.wire.clone()).unwrap(), flow);
        assert_eq!(raw.key(), flow.key.clone().unwrap().encode_to_vec());
        assert_eq!(raw.counters, [0; 7]);
        let counted = Flow { packets_in: 1, bytes_out: 4, num_connections_live: 7, ..flow.clone() };
        let result = Bytes::from(FlowResult { id: 7, flow: Some(counted) }.encode_to_vec());
        assert_eq!(flow_of_result(result).unwrap().unwrap().counters, [1, 0, 0, 4, 0, 0, 7]);
        assert!(flow_of_result(Bytes::from(FlowResult { id: 1, flow: None }.encode_to_vec())).unwrap().is_none());
        assert!(flow_of_result(Bytes::from_static(&[0x12, 0x05, 0x01])).is_err());
    }
}
