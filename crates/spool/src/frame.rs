//! On-disk record framing: length + CRC32 + sequence + timestamp + payload.
//!
//! ```text
//! offset 0  u32 LE  payload length
//! offset 4  u32 LE  CRC32 (IEEE) over bytes [0..4) ++ [8..24+len)
//! offset 8  u64 LE  sequence number
//! offset 16 u64 LE  append time, unix milliseconds
//! offset 24 ..      payload
//! ```
//! The CRC covers the length field too, so a garbled length cannot make a
//! wrong slice look valid. A zero-filled region never validates (CRC of zero
//! bytes is not zero), which matters for preallocated or partially flushed pages.

/// Bytes before the payload.
pub const HEADER_LEN: usize = 24;

/// Every segment file starts with this magic + format version.
pub const SEGMENT_MAGIC: [u8; 8] = *b"AESPOOL1";

/// Hard upper bound on one payload, whatever the configuration says; protects
/// recovery from allocating gigabytes because of a garbled length field.
pub const ABSOLUTE_MAX_RECORD: usize = 256 << 20;

/// One decoded frame, borrowing its payload from the scanned buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub seq: u64,
    pub appended_at_ms: u64,
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Total bytes the frame occupies on disk.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

/// Result of trying to decode one frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    Frame(Frame<'a>),
    /// The buffer ends inside the frame; `need` is the full frame length if
    /// the header was readable.
    Incomplete {
        need: Option<usize>,
    },
    /// The bytes are not a valid frame.
    Corrupt(CorruptReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptReason {
    LengthTooLarge(u32),
    CrcMismatch,
    /// Sequence number `u64::MAX` is never written (it would leave no successor).
    SequenceOverflow,
}

impl std::fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorruptReason::LengthTooLarge(n) => write!(f, "record length {n} exceeds the limit"),
            CorruptReason::CrcMismatch => f.write_str("CRC mismatch"),
            CorruptReason::SequenceOverflow => f.write_str("sequence number out of range"),
        }
    }
}

/// Decode the frame at the start of `buf`. `max_payload` bounds the length field.
pub fn decode(buf: &[u8], max_payload: usize) -> Decoded<'_> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Decoded::Incomplete { need: None };
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    if len as usize > max_payload.min(ABSOLUTE_MAX_RECORD) {
        return Decoded::Corrupt(CorruptReason::LengthTooLarge(len));
    }
    let total = HEADER_LEN + len as usize;
    let Some(frame) = buf.get(..total) else {
        return Decoded::Incomplete { need: Some(total) };
    };
    let stored_crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if checksum(frame) != stored_crc {
        return Decoded::Corrupt(CorruptReason::CrcMismatch);
    }
    let seq = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
    if seq == u64::MAX {
        return Decoded::Corrupt(CorruptReason::SequenceOverflow);
    }
    let appended_at_ms = u64::from_le_bytes(header[16..24].try_into().unwrap_or_default());
    Decoded::Frame(Frame {
        seq,
        appended_at_ms,
        payload: &frame[HEADER_LEN..],
    })
}

/// CRC over a complete frame, skipping the CRC field itself.
fn checksum(frame: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&frame[..4]);
    h.update(&frame[8..]);
    h.finalize()
}

/// Append a frame with placeholder seq/CRC (filled in by [`seal`]) to `out`.
/// Appenders call this under the queue lock; the committer seals the group.
pub(crate) fn push_unsealed(out: &mut Vec<u8>, payload: &[u8]) {
    // Callers check the length against the configured limit first.
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0u8; 20]);
    out.extend_from_slice(payload);
}

/// Fill in sequence numbers (from `first_seq`), timestamps and CRCs for every
/// frame in `buf`, which must hold only frames written by [`push_unsealed`].
/// Returns the number of frames.
pub(crate) fn seal(buf: &mut [u8], first_seq: u64, now_ms: u64) -> u64 {
    let mut off = 0;
    let mut seq = first_seq;
    let mut count = 0;
    while off + HEADER_LEN <= buf.len() {
        let len = u32::from_le_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        let end = off + HEADER_LEN + len;
        let frame = &mut buf[off..end];
        frame[8..16].copy_from_slice(&seq.to_le_bytes());
        frame[16..24].copy_from_slice(&now_ms.to_le_bytes());
        let crc = checksum(frame);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        off = end;
        seq = seq.wrapping_add(1);
        count += 1;
    }
    count
}

/// Encode one complete frame (tests, tools).
pub fn encode(seq: u64, appended_at_ms: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    push_unsealed(&mut out, payload);
    let n = seal(&mut out, seq, appended_at_ms);
    debug_assert_eq!(n, 1);
    out
}

/// Outcome of scanning a whole segment body (after the magic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Byte length of the valid prefix (relative to the scanned buffer).
    pub valid_len: usize,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Why scanning stopped before the end of the buffer, if it did.
    pub stop: Option<ScanStop>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStop {
    /// The buffer ends inside a frame (torn write).
    TornTail,
    Corrupt(CorruptReason),
    /// A frame whose sequence does not increase: stale or misplaced data.
    SequenceRegression {
        seq: u64,
        previous: u64,
    },
}

/// Walk the frames of a segment body, stopping at the first frame that is
/// torn, corrupt or out of sequence. `after_seq` is the last sequence number
/// seen before this buffer (from earlier segments), if any.
pub fn scan(buf: &[u8], max_payload: usize, after_seq: Option<u64>) -> Scan {
    let mut off = 0;
    let mut scan = Scan {
        valid_len: 0,
        records: 0,
        first_seq: None,
        last_seq: None,
        stop: None,
    };
    let mut previous = after_seq;
    while off < buf.len() {
        match decode(&buf[off..], max_payload) {
            Decoded::Frame(f) => {
                if let Some(p) = previous
                    && f.seq <= p
                {
                    scan.stop = Some(ScanStop::SequenceRegression {
                        seq: f.seq,
                        previous: p,
                    });
                    break;
                }
                previous = Some(f.seq);
                scan.first_seq.get_or_insert(f.seq);
                scan.last_seq = Some(f.seq);
                scan.records += 1;
                off += f.encoded_len();
                scan.valid_len = off;
            }
            Decoded::Incomplete { .. } => {
                scan.stop = Some(ScanStop::TornTail);
                break;
            }
            Decoded::Corrupt(r) => {
                scan.stop = Some(ScanStop::Corrupt(r));
                break;
            }
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_crc_detects_flips() {
        let f = encode(42, 7, b"hello");
        match decode(&f, 1024) {
            Decoded::Frame(fr) => {
                assert_eq!(fr.seq, 42);
                assert_eq!(fr.appended_at_ms, 7);
                assert_eq!(fr.payload, b"hello");
            }
            other => panic!("unexpected {other:?}"),
        }
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x10;
            assert!(
                !matches!(decode(&g, 1024), Decoded::Frame(_)),
                "flip at byte {i} went undetected"
            );
        }
    }

    #[test]
    fn max_sequence_is_rejected() {
        assert_eq!(
            decode(&encode(u64::MAX, 0, b"x"), 1024),
            Decoded::Corrupt(CorruptReason::SequenceOverflow)
        );
    }

    #[test]
    fn zeros_are_not_a_frame() {
        assert!(matches!(
            decode(&[0u8; 64], 1024),
            Decoded::Corrupt(CorruptReason::CrcMismatch)
        ));
    }

    #[test]
    fn scan_stops_at_torn_tail() {
        let mut buf = Vec::new();
        for s in 1..=3u64 {
            buf.extend(encode(s, 0, &[s as u8; 10]));
        }
        let full = buf.len();
        buf.extend(&encode(4, 0, b"truncated")[..20]);
        let s = scan(&buf, 1024, None);
        assert_eq!(s.valid_len, full);
        assert_eq!(s.records, 3);
        assert_eq!(s.last_seq, Some(3));
        assert_eq!(s.stop, Some(ScanStop::TornTail));
    }

    #[test]
    fn scan_rejects_sequence_regression() {
        let mut buf = encode(5, 0, b"a");
        buf.extend(encode(5, 0, b"b"));
        let s = scan(&buf, 1024, None);
        assert_eq!(s.records, 1);
        assert!(matches!(
            s.stop,
            Some(ScanStop::SequenceRegression {
                seq: 5,
                previous: 5
            })
        ));
    }

    #[test]
    fn oversized_length_is_corrupt_not_allocation() {
        let mut f = encode(1, 0, b"x");
        f[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(&f, 1 << 20),
            Decoded::Corrupt(CorruptReason::LengthTooLarge(_))
        ));
    }
}
