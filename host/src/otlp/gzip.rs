//! gzip by ISA-L's igzip, one request at a time (stateless: the whole input in, the whole member out).
//!
//! igzip compresses these requests at its levels 0 and 1 in about half the CPU zlib-rs takes at its level 1, and
//! into fewer bytes (180 and 156 against 196 B a 1,187 B record; `make bench`, "compressing OTLP requests").
//! `isal-rs` builds ISA-L from the source it carries (nasm and autotools: `tools/build-deps.sh`) and links it
//! statically; its safe functions keep this workspace free of `unsafe`.

use isal::{Codec, CompressionLevel};

/// igzip's levels, as `isal-rs` offers them: 0 (one fixed Huffman table, not fitted to the data), 1 and 3.
pub const LEVELS: [u32; 3] = [0, 1, 3];

/// The gzip member of `raw`, compressed at igzip `level` (one of [`LEVELS`]).
///
/// # Panics
/// If `level` is not one of [`LEVELS`].
pub fn compress(raw: &[u8], level: u32) -> Vec<u8> {
    let level = match level {
        0 => CompressionLevel::Zero,
        1 => CompressionLevel::One,
        3 => CompressionLevel::Three,
        _ => panic!("igzip has no level {level}"),
    };
    // One call compresses it all, so the output must fit at once. Room for the worst case, zeroed as `isal-rs`
    // takes it, would mean zeroing as many bytes as the request has; requests shrink 6–8×, so a quarter of the
    // input's size is tried first.
    let mut out = vec![0; raw.len() / 4 + 1024];
    if let Ok(len) = isal::compress_into(raw, &mut out, level, Codec::Gzip) {
        out.truncate(len);
        return out;
    }
    // Input that does not compress is stored: 5 B of block header per 64 KiB, plus the gzip header and
    // trailer and one block's Huffman header at most.
    out = vec![0; raw.len() + raw.len() / 0xffff * 5 + 5 + 18 + 328];
    let len = isal::compress_into(raw, &mut out, level, Codec::Gzip).expect("the output fits igzip's bound");
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body).read_to_end(&mut out).expect("a valid gzip member");
        out
    }

    #[test]
    fn every_level_round_trips_through_another_inflater() {
        let text: Vec<u8> =
            (0..20_000u32).flat_map(|i| format!("{{\"flow\":{i},\"ns\":\"a{}\"}}", i % 7).into_bytes()).collect();
        for level in LEVELS {
            let body = compress(&text, level);
            assert_eq!(&body[..2], [0x1f, 0x8b], "gzip magic at level {level}");
            assert!(body.len() < text.len() / 4, "level {level}: {} of {} B", body.len(), text.len());
            assert_eq!(gunzip(&body), text, "level {level}");
        }
    }

    #[test]
    fn input_that_does_not_compress_fits_the_bound() {
        // xorshift bytes: incompressible, so igzip stores them and the output is longer than the input.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for level in LEVELS {
            let body = compress(&noise, level);
            assert!(body.len() > noise.len() / 4 + 1024, "level {level}: the first, smaller output fitted");
            assert_eq!(gunzip(&body), noise, "level {level}");
        }
        assert_eq!(gunzip(&compress(&[], 1)), Vec::<u8>::new());
    }
}
