//! The capture file: flows exactly as Goldmane sent them, for `flowgate replay` and `flowgate test` (written by
//! `flowgate capture` and by a gateway's admin `/capture`).
//!
//! ```text
//! "flowcap\n"                          8 bytes of magic
//! varint n, n bytes                    the header, a CaptureHeader message
//! (varint n, n bytes)*                 the records, each a CaptureRecord message
//! ```
//!
//! Both messages are plain protobuf (`proto/flowgate/capture.proto`), length-delimited as protobuf's own
//! `writeDelimitedTo` / `parseDelimitedFrom` do, so any protobuf library reads a capture without Flowgate:
//!
//! - `CaptureHeader { uint32 version = 1; uint64 started_unix_ms = 2; string source = 3; string writer = 4; }`
//! - `CaptureRecord { uint64 offset_ms = 1; goldmane.Flow flow = 2; }`: `flow` holds the `goldmane.Flow` bytes as
//!   received, untouched (a byte-exact copy: they are spliced in, never re-encoded); `offset_ms` is when the flow
//!   arrived, after `started_unix_ms` (what `replay --pace recorded` follows).
//!
//! Compatibility: readers skip unknown fields of both messages, so later writers may add fields; a change a
//! reader must understand raises `version`, and readers refuse versions they do not know, naming them.

use std::io::Write;

use bytes::Bytes;

use crate::wire::{Reader, WIRE_LEN, WIRE_VARINT, WireError};

/// The first bytes of every capture.
pub const MAGIC: &[u8; 8] = b"flowcap\n";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;

/// What a capture says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub version: u32,
    /// When the capture started (Unix milliseconds); record offsets count from here.
    pub started_unix_ms: u64,
    /// Where the flows came from (the Goldmane address, or a gateway's admin address).
    pub source: String,
    /// The program that wrote it (`flowgate 0.x.y`).
    pub writer: String,
}

/// One captured flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Milliseconds after the capture started at which the flow arrived.
    pub offset_ms: u64,
    /// The encoded `goldmane.Flow`, as Goldmane sent it.
    pub flow: Bytes,
}

/// A capture that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("not a Flowgate capture (it does not start with {:?})", String::from_utf8_lossy(MAGIC))]
    NotACapture,
    #[error("capture format version {0} is newer than this flowgate reads (version {VERSION}): use a newer flowgate")]
    Version(u32),
    #[error("the capture header is damaged: {0}")]
    Header(WireError),
    #[error("record {record} (byte {offset}) is damaged: {error}")]
    Record { record: usize, offset: usize, error: WireError },
}

/// True when `bytes` start like a capture (what `flowgate test` uses to tell captures from JSON lines).
pub fn is_capture(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Reads a whole capture (records share `bytes`: no copy).
pub fn read(bytes: &Bytes) -> Result<(Header, Vec<Record>), CaptureError> {
    let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or(CaptureError::NotACapture)?;
    let mut r = Reader::new(body);
    let header = parse_header(r.len_delimited().map_err(CaptureError::Header)?).map_err(CaptureError::Header)?;
    if header.version > VERSION || header.version == 0 {
        return Err(CaptureError::Version(header.version));
    }
    let mut records = Vec::new();
    while !r.is_empty() {
        let offset = MAGIC.len() + body.len() - r.remaining();
        let damaged = |error| CaptureError::Record { record: records.len() + 1, offset, error };
        let message = r.len_delimited().map_err(damaged)?;
        let (offset_ms, flow) = parse_record(message).map_err(damaged)?;
        records.push(Record { offset_ms, flow: bytes.slice_ref(flow) });
    }
    Ok((header, records))
}

fn parse_header(buf: &[u8]) -> Result<Header, WireError> {
    let mut h = Header::default();
    let mut r = Reader::new(buf);
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| WireError("header text is not UTF-8"));
    while !r.is_empty() {
        match r.tag()? {
            (1, WIRE_VARINT) => h.version = u32::try_from(r.varint()?).map_err(|_| WireError("version overflow"))?,
            (2, WIRE_VARINT) => h.started_unix_ms = r.varint()?,
            (3, WIRE_LEN) => h.source = text(r.len_delimited()?)?,
            (4, WIRE_LEN) => h.writer = text(r.len_delimited()?)?,
            (1..=4, _) => return Err(WireError("header field with the wrong wire type")),
            (_, wire_type) => r.skip(wire_type)?,
        }
    }
    Ok(h)
}

fn parse_record(buf: &[u8]) -> Result<(u64, &[u8]), WireError> {
    let (mut offset_ms, mut flow) = (0, None);
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        match r.tag()? {
            (1, WIRE_VARINT) => offset_ms = r.varint()?,
            (2, WIRE_LEN) => flow = Some(r.len_delimited()?),
            (1 | 2, _) => return Err(WireError("record field with the wrong wire type")),
            (_, wire_type) => r.skip(wire_type)?,
        }
    }
    Ok((offset_ms, flow.ok_or(WireError("record without a flow"))?))
}

/// Writes a capture to `out` as flows arrive. Bytes reach `out` as they are written (wrap a file in a
/// `BufWriter` and [`Writer::finish`] it).
pub struct Writer<W: Write> {
    out: W,
    /// Bytes written so far, the magic and header included.
    pub bytes: u64,
    /// Records written so far.
    pub records: u64,
    scratch: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// Writes the magic and the header.
    pub fn new(mut out: W, header: &Header) -> std::io::Result<Self> {
        let mut h = Vec::new();
        field_varint(&mut h, 1, u64::from(header.version));
        field_varint(&mut h, 2, header.started_unix_ms);
        field_bytes(&mut h, 3, header.source.as_bytes());
        field_bytes(&mut h, 4, header.writer.as_bytes());
        let mut start = MAGIC.to_vec();
        prost::encoding::encode_varint(h.len() as u64, &mut start);
        start.extend_from_slice(&h);
        out.write_all(&start)?;
        Ok(Writer { out, bytes: start.len() as u64, records: 0, scratch: Vec::with_capacity(64) })
    }

    /// Appends one flow (its encoded `goldmane.Flow`), arrived `offset_ms` after the start.
    pub fn write(&mut self, offset_ms: u64, flow: &[u8]) -> std::io::Result<()> {
        let s = &mut self.scratch;
        s.clear();
        let mut inner = Vec::with_capacity(12);
        field_varint(&mut inner, 1, offset_ms);
        prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, &mut inner);
        prost::encoding::encode_varint(flow.len() as u64, &mut inner);
        prost::encoding::encode_varint((inner.len() + flow.len()) as u64, s);
        s.extend_from_slice(&inner);
        self.out.write_all(s)?;
        self.out.write_all(flow)?;
        self.bytes += (s.len() + flow.len()) as u64;
        self.records += 1;
        Ok(())
    }

    /// The output (to take what was written so far, when it is a buffer).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Flushes and hands back the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

fn field_varint(buf: &mut Vec<u8>, field: u32, v: u64) {
    prost::encoding::encode_key(field, prost::encoding::WireType::Varint, buf);
    prost::encoding::encode_varint(v, buf);
}

fn field_bytes(buf: &mut Vec<u8>, field: u32, v: &[u8]) {
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, buf);
    prost::encoding::encode_varint(v.len() as u64, buf);
    buf.extend_from_slice(v);
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::flowgen::FlowGen;

    fn header() -> Header {
        Header {
            version: VERSION,
            started_unix_ms: 1_764_970_845_123,
            source: "goldmane:7443".into(),
            writer: "t".into(),
        }
    }

    #[test]
    fn flows_round_trip_byte_for_byte_with_their_offsets() {
        let flows: Vec<Vec<u8>> =
            FlowGen { seed: 9, keys: 50 }.bucket(1_764_970_845).iter().map(|f| f.encode_to_vec()).collect();
        let mut w = Writer::new(Vec::new(), &header()).unwrap();
        for (i, f) in flows.iter().enumerate() {
            w.write(i as u64 * 7, f).unwrap();
        }
        let (records, bytes) = (w.records, w.bytes);
        let file = Bytes::from(w.finish().unwrap());
        assert_eq!(bytes, file.len() as u64);
        assert_eq!(records, 50);
        assert!(is_capture(&file));
        let (h, got) = read(&file).unwrap();
        assert_eq!(h, header());
        assert_eq!(got.len(), flows.len());
        for (i, (r, f)) in got.iter().zip(&flows).enumerate() {
            assert_eq!(r.flow.as_ref(), f.as_slice());
            assert_eq!(r.offset_ms, i as u64 * 7);
        }
    }

    /// The documented layout, read with prost (as any protobuf library would): each record is a message whose
    /// field 2 decodes as a `goldmane.Flow`.
    #[derive(Clone, PartialEq, prost::Message)]
    struct CaptureRecord {
        #[prost(uint64, tag = "1")]
        offset_ms: u64,
        #[prost(message, optional, tag = "2")]
        flow: Option<crate::proto::Flow>,
    }

    #[test]
    fn any_protobuf_library_reads_the_records_as_documented() {
        let flow = FlowGen { seed: 4, keys: 3 }.bucket(1_800_000_000).remove(2);
        let mut w = Writer::new(Vec::new(), &header()).unwrap();
        w.write(1234, &flow.encode_to_vec()).unwrap();
        let file = w.finish().unwrap();
        let mut rest = &file[MAGIC.len()..];
        let header_len = prost::encoding::decode_varint(&mut rest).unwrap() as usize;
        rest = &rest[header_len..];
        let record = CaptureRecord::decode_length_delimited(rest).unwrap();
        assert_eq!(record, CaptureRecord { offset_ms: 1234, flow: Some(flow) });
    }

    #[test]
    fn damage_is_named_and_newer_versions_are_refused() {
        assert!(matches!(read(&Bytes::from_static(b"{\"Key\":{}}\n")), Err(CaptureError::NotACapture)));
        let newer = Header { version: VERSION + 1, ..header() };
        let file = Bytes::from(Writer::new(Vec::new(), &newer).unwrap().finish().unwrap());
        let err = read(&file).unwrap_err();
        assert!(err.to_string().contains("version 2 is newer"), "{err}");
        let mut w = Writer::new(Vec::new(), &header()).unwrap();
        w.write(0, b"\x10\x01").unwrap();
        w.write(0, b"\x10\x02").unwrap();
        let mut file = w.finish().unwrap();
        file.truncate(file.len() - 1);
        let err = read(&Bytes::from(file)).unwrap_err();
        assert!(matches!(err, CaptureError::Record { record: 2, .. }), "{err}");
    }
}
