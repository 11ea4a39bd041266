//! The journal's on-disk format (pure encode/decode, no I/O).
//!
//! A journal is a text file of records, one per line: `CRC32HEX SP JSON LF`, where the CRC32
//! covers the JSON bytes. The first record is a snapshot of the whole state; every later record
//! is one commit (the events of one allocate, release or gc, applied together or not at all).
//! A last line without its LF is a write that a crash cut short: it was never acknowledged, so
//! it is ignored (and cut off before the next append). Anything else that does not decode is
//! corruption, reported as such: the store refuses to work rather than forget a lease.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::pool::{Event, Snapshot};
use crate::types::Lease;

/// Format version written in snapshots.
pub(crate) const FORMAT: u32 = 1;

/// One journal line. Externally tagged (`{"snapshot": {...}}`), which serde decodes in one
/// streaming pass; an internally tagged enum would buffer a whole snapshot first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Record {
    /// The whole state; only as the first record.
    Snapshot {
        format: u32,
        leases: Vec<Lease>,
        last: Vec<Option<IpAddr>>,
    },
    /// Events applied together.
    Commit { events: Vec<Event> },
}

impl Record {
    pub(crate) fn snapshot(s: Snapshot) -> Record {
        Record::Snapshot {
            format: FORMAT,
            leases: s.leases,
            last: s.last,
        }
    }
}

/// Encode one record as a journal line (with its LF).
pub(crate) fn encode(record: &Record) -> Vec<u8> {
    // Serialising these plain data types cannot fail; fall back to an empty object that the
    // decoder would reject rather than panic.
    let json = serde_json::to_vec(record).unwrap_or_else(|_| b"{}".to_vec());
    let mut line = format!("{:08x} ", super::crc32::hash(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    line
}

/// Decoded content of a byte range of a journal.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// Complete, valid records in order.
    pub(crate) records: Vec<Record>,
    /// Bytes consumed by them (a torn tail is not included).
    pub(crate) consumed: usize,
}

/// Why a journal does not decode: 1-based record number within `bytes` and reason.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub(crate) record: u64,
    pub(crate) reason: String,
}

/// Decode every complete line of `bytes`; a final line without LF is left unconsumed.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    let mut n = 0u64;
    while let Some(len) = bytes[pos..].iter().position(|b| *b == b'\n') {
        n += 1;
        let line = &bytes[pos..pos + len];
        records.push(decode_line(line).map_err(|reason| DecodeError { record: n, reason })?);
        pos += len + 1;
    }
    Ok(Decoded {
        records,
        consumed: pos,
    })
}

fn decode_line(line: &[u8]) -> Result<Record, String> {
    if line.len() < 10 || line[8] != b' ' {
        return Err("malformed record (expected CRC and JSON)".into());
    }
    let crc_text = std::str::from_utf8(&line[..8]).map_err(|_| "malformed CRC".to_string())?;
    let crc = u32::from_str_radix(crc_text, 16).map_err(|_| "malformed CRC".to_string())?;
    let json = &line[9..];
    if super::crc32::hash(json) != crc {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(json).map_err(|e| format!("undecodable record: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Owner;

    #[test]
    fn round_trip_and_torn_tail() {
        let a = Record::snapshot(Snapshot {
            leases: vec![],
            last: vec![None],
        });
        let b = Record::Commit {
            events: vec![Event::Release {
                owner: Owner::new("c", "eth0"),
            }],
        };
        let mut bytes = encode(&a);
        bytes.extend(encode(&b));
        let full = bytes.len();
        let third = encode(&b);
        bytes.extend(&third[..third.len() - 1]); // torn: no LF
        let d = decode(&bytes).expect("decodes");
        assert_eq!(d.records, vec![a, b]);
        assert_eq!(d.consumed, full);
    }

    #[test]
    fn flipped_byte_is_corruption() {
        let mut line = encode(&Record::Commit { events: vec![] });
        let i = line.len() - 3;
        line[i] ^= 0x01;
        let e = decode(&line).expect_err("corrupt");
        assert_eq!(e.record, 1);
        assert!(e.reason.contains("checksum"), "{}", e.reason);
        assert!(decode(b"garbage\n").is_err());
    }
}
