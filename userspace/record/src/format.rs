//! On-disk format (version 1): framing, segment headers, record lines, hashes.
//!
//! A session file is a sequence of *segments*. Each segment is
//!
//! 1. a zstd **skippable frame** (magic `0x184D2A50`, LE u32 size = 226)
//!    holding the binary [`SegmentHeader`], then
//! 2. one ordinary **zstd frame** holding the records as lines:
//!    `<64 hex chain hash> <record JSON>\n`. It is written without zstd's content checksum
//!    (the header's SHA-256 covers the compressed bytes); frames with one read too.
//!
//! Stock `zstd -d` skips the headers and prints the record lines.
//!
//! Chain: `h_-1 = SHA-256("dbwarden-chain-v1\0" ‖ session id)` and
//! `h_i = SHA-256(h_{i-1} ‖ JSON bytes of record i)`; every line carries its
//! `h_i`, so the verifier can name the first altered record. A segment header
//! records the chain hash before (`prev_head`) and after (`head`) its records,
//! SHA-256 of its compressed bytes, and an Ed25519 signature over all of that
//! plus the session id, sequence number and signer's key id.
//!
//! Segment header layout (all integers little-endian, 226 bytes):
//!
//! | off | len | field |
//! |-----|-----|-------|
//! | 0   | 4   | `DBWS` |
//! | 4   | 2   | version (1) |
//! | 6   | 16  | session id |
//! | 22  | 8   | segment sequence number (0, 1, ...) |
//! | 30  | 8   | index of the first record |
//! | 38  | 4   | record count |
//! | 42  | 4   | uncompressed payload length |
//! | 46  | 4   | compressed payload length |
//! | 50  | 32  | prev_head |
//! | 82  | 32  | head |
//! | 114 | 32  | SHA-256 of the compressed payload |
//! | 146 | 16  | signer key id |
//! | 162 | 64  | Ed25519 signature over `"dbwarden-segment-v1\0"` ‖ bytes 0..162 |

use crate::key::{HostKey, KeyId, PublicKey};
use crate::model::{RecordBody, SessionId};
use crate::stamp::Stamp;
use crate::util::{hex_into, sha256, unhex};

/// zstd skippable frame magic used for segment headers.
pub const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// Standard zstd frame magic.
pub const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// Encoded size of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 226;
/// Format version written and accepted.
pub const FORMAT_VERSION: u16 = 1;
/// Largest compressed or uncompressed segment payload accepted (bounds memory
/// on hostile files).
pub const MAX_PAYLOAD: u32 = 64 << 20;
/// File name extension of session files.
pub const SESSION_EXT: &str = "dbws";

const SEG_MAGIC: &[u8; 4] = b"DBWS";
const SIGNED_LEN: usize = 162;

/// Decoded segment header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version.
    pub version: u16,
    /// Session the segment belongs to.
    pub session_id: SessionId,
    /// Segment sequence number.
    pub seq: u64,
    /// Index of the first record in the segment.
    pub first_record: u64,
    /// Number of records in the segment.
    pub record_count: u32,
    /// Uncompressed payload length.
    pub raw_len: u32,
    /// Compressed payload length (bytes following the header frame).
    pub payload_len: u32,
    /// Chain hash before the first record.
    pub prev_head: [u8; 32],
    /// Chain hash after the last record.
    pub head: [u8; 32],
    /// SHA-256 of the compressed payload.
    pub payload_hash: [u8; 32],
    /// Signer.
    pub key_id: KeyId,
    /// Signature.
    pub signature: [u8; 64],
}

impl SegmentHeader {
    fn encode_signed_part(&self) -> [u8; SIGNED_LEN] {
        let mut b = [0u8; SIGNED_LEN];
        b[0..4].copy_from_slice(SEG_MAGIC);
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6..22].copy_from_slice(&self.session_id.0);
        b[22..30].copy_from_slice(&self.seq.to_le_bytes());
        b[30..38].copy_from_slice(&self.first_record.to_le_bytes());
        b[38..42].copy_from_slice(&self.record_count.to_le_bytes());
        b[42..46].copy_from_slice(&self.raw_len.to_le_bytes());
        b[46..50].copy_from_slice(&self.payload_len.to_le_bytes());
        b[50..82].copy_from_slice(&self.prev_head);
        b[82..114].copy_from_slice(&self.head);
        b[114..146].copy_from_slice(&self.payload_hash);
        b[146..162].copy_from_slice(&self.key_id.0);
        b
    }

    fn signed_message(&self) -> Vec<u8> {
        let mut m = b"dbwarden-segment-v1\0".to_vec();
        m.extend_from_slice(&self.encode_signed_part());
        m
    }

    /// Signs the header with `key` (sets `key_id` and `signature`).
    pub fn sign(&mut self, key: &HostKey) {
        self.key_id = key.key_id();
        self.signature = key.sign(&self.signed_message());
    }

    /// Whether the signature verifies under `key` (the key id is not consulted).
    pub fn verify(&self, key: &PublicKey) -> bool {
        key.verify(&self.signed_message(), &self.signature)
    }

    /// The complete skippable frame (8-byte frame header + 226 bytes).
    pub fn to_frame(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(8 + SEGMENT_HEADER_LEN);
        f.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        f.extend_from_slice(&u32::try_from(SEGMENT_HEADER_LEN).unwrap_or(0).to_le_bytes());
        f.extend_from_slice(&self.encode_signed_part());
        f.extend_from_slice(&self.signature);
        f
    }

    /// Decodes the 226 header bytes.
    ///
    /// # Errors
    /// A description of the first malformed field.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() != SEGMENT_HEADER_LEN {
            return Err(format!(
                "segment header is {} bytes, expected {SEGMENT_HEADER_LEN}",
                b.len()
            ));
        }
        if &b[0..4] != SEG_MAGIC {
            return Err("bad segment header magic".into());
        }
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(arr(&b[o..o + 4]));
        let u64_at = |o: usize| u64::from_le_bytes(arr(&b[o..o + 8]));
        let version = u16_at(4);
        if version != FORMAT_VERSION {
            return Err(format!("unsupported format version {version}"));
        }
        Ok(Self {
            version,
            session_id: SessionId(arr(&b[6..22])),
            seq: u64_at(22),
            first_record: u64_at(30),
            record_count: u32_at(38),
            raw_len: u32_at(42),
            payload_len: u32_at(46),
            prev_head: arr(&b[50..82]),
            head: arr(&b[82..114]),
            payload_hash: arr(&b[114..146]),
            key_id: KeyId(arr(&b[146..162])),
            signature: arr(&b[162..226]),
        })
    }
}

fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&s[..N]);
    a
}

/// Result of looking for the next segment header at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderAt {
    /// Clean end of file.
    End,
    /// The file ends inside a header frame (`have` bytes present).
    Truncated {
        /// Bytes present from the offset to the end of file.
        have: usize,
    },
    /// Not a valid header frame.
    Malformed(String),
    /// A header; the payload starts at `payload_offset`.
    Header {
        /// Decoded header (not yet authenticated).
        header: Box<SegmentHeader>,
        /// Where the compressed payload starts.
        payload_offset: usize,
    },
}

/// Parses the segment header frame at `off` (no authentication).
pub fn header_at(file: &[u8], off: usize) -> HeaderAt {
    let rest = &file[off.min(file.len())..];
    if rest.is_empty() {
        return HeaderAt::End;
    }
    if rest.len() < 8 {
        return HeaderAt::Truncated { have: rest.len() };
    }
    let magic = u32::from_le_bytes(arr(&rest[0..4]));
    let size = u32::from_le_bytes(arr(&rest[4..8]));
    if magic != SKIPPABLE_MAGIC {
        return HeaderAt::Malformed(format!(
            "expected segment header frame (magic {SKIPPABLE_MAGIC:#x}), found {magic:#x}"
        ));
    }
    if size as usize != SEGMENT_HEADER_LEN {
        return HeaderAt::Malformed(format!(
            "segment header frame size {size}, expected {SEGMENT_HEADER_LEN}"
        ));
    }
    if rest.len() < 8 + SEGMENT_HEADER_LEN {
        return HeaderAt::Truncated { have: rest.len() };
    }
    match SegmentHeader::decode(&rest[8..8 + SEGMENT_HEADER_LEN]) {
        Ok(h) => HeaderAt::Header {
            header: Box::new(h),
            payload_offset: off + 8 + SEGMENT_HEADER_LEN,
        },
        Err(e) => HeaderAt::Malformed(e),
    }
}

/// Chain hash before record 0 of `session`.
pub fn genesis(session: &SessionId) -> [u8; 32] {
    sha256(&[b"dbwarden-chain-v1\0", &session.0])
}

/// `h_i = SHA-256(h_{i-1} ‖ record JSON)`.
pub fn chain(prev: &[u8; 32], record_json: &[u8]) -> [u8; 32] {
    sha256(&[prev, record_json])
}

/// Appends one record line (`<hash hex> <json>\n`) to `buf`.
pub fn push_line(buf: &mut Vec<u8>, hash: &[u8; 32], json: &[u8]) {
    let at = buf.len();
    buf.resize(at + 64, 0);
    hex_into(&mut buf[at..], hash);
    buf.push(b' ');
    buf.extend_from_slice(json);
    buf.push(b'\n');
}

/// Appends the JSON of record `n` (exactly the bytes `serde_json::to_vec`
/// gives for the equivalent [`crate::Record`]) to `out`, without building a
/// `Record` or any intermediate buffer.
///
/// The `Record` derive flattens the body into the record object, which serde
/// routes through a slow map serializer; here the `n`/`ts` prefix is written
/// by hand and the body's own object (`{"type":...}`) is serialized right
/// after it, its opening `{` then overwritten by `,`.
///
/// # Errors
/// Serialization errors (e.g. a timestamp RFC 3339 cannot express); `out`
/// is then restored to its previous length.
pub fn write_record_json(
    out: &mut Vec<u8>,
    n: u64,
    ts: Stamp,
    body: &RecordBody,
) -> Result<(), serde_json::Error> {
    let start = out.len();
    let r = write_record_json_inner(out, n, ts, body);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// `{"n":N,"ts":"…"` — the opening of record `n`'s JSON, which its body's fields continue.
///
/// # Errors
/// A timestamp RFC 3339 cannot express (`out` may then hold part of the prefix).
pub(crate) fn write_record_prefix(
    out: &mut Vec<u8>,
    n: u64,
    ts: Stamp,
) -> Result<(), serde_json::Error> {
    use serde::ser::Error as _;
    out.extend_from_slice(b"{\"n\":");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b",\"ts\":\"");
    // RFC 3339 text is digits, `-:.TZ`: nothing JSON would escape.
    ts.write_rfc3339(out).map_err(serde_json::Error::custom)?;
    out.push(b'"');
    Ok(())
}

fn write_record_json_inner(
    out: &mut Vec<u8>,
    n: u64,
    ts: Stamp,
    body: &RecordBody,
) -> Result<(), serde_json::Error> {
    use serde::ser::Error as _;
    write_record_prefix(out, n, ts)?;
    if crate::json::write_hot_body(out, body) {
        return Ok(());
    }
    let body_at = out.len();
    serde_json::to_writer(&mut *out, body)?;
    // An internally tagged body always serializes as a non-empty object.
    if out.get(body_at..body_at + 2) != Some(b"{\"".as_slice()) {
        return Err(serde_json::Error::custom(
            "record body is not a non-empty JSON object",
        ));
    }
    out[body_at] = b',';
    Ok(())
}

/// Splits one record line into (stored hash, JSON bytes).
///
/// # Errors
/// When the line does not have the `<64 lowercase hex> <json>` shape.
pub fn split_line(line: &[u8]) -> Result<([u8; 32], &[u8]), &'static str> {
    if line.len() < 66 || line[64] != b' ' {
        return Err("record line does not start with a hash");
    }
    let h = std::str::from_utf8(&line[..64])
        .ok()
        .and_then(unhex::<32>)
        .ok_or("record hash is not 64 lowercase hex digits")?;
    Ok((h, &line[65..]))
}

/// Splits a decompressed payload into lines; `Err` if it does not end in `\n`.
///
/// # Errors
/// When the payload has a trailing partial line.
pub fn lines(payload: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    if payload.last() != Some(&b'\n') {
        return Err("payload does not end with a newline");
    }
    Ok(payload[..payload.len() - 1]
        .split(|&b| b == b'\n')
        .collect())
}

/// Result of locating the compressed payload frame after a segment header.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameAt {
    /// A complete zstd frame of this many bytes.
    Frame(usize),
    /// The file ends inside the frame.
    Truncated,
    /// Not a valid zstd frame.
    Bad(String),
}

/// Locates the zstd frame at `off`. `declared` (the header's payload length)
/// only decides between "truncated" and "corrupt" when the frame is incomplete;
/// the real frame length is returned so altered payloads can still be diagnosed.
pub fn payload_frame(file: &[u8], off: usize, declared: u32) -> FrameAt {
    let rest = &file[off.min(file.len())..];
    let short = rest.len() < declared as usize;
    if rest.len() < 4 {
        return if short {
            FrameAt::Truncated
        } else {
            FrameAt::Bad("segment payload missing".into())
        };
    }
    if u32::from_le_bytes(arr(&rest[..4])) != ZSTD_MAGIC {
        return FrameAt::Bad("segment payload is not a zstd frame".into());
    }
    match zstd::zstd_safe::find_frame_compressed_size(rest) {
        Ok(n) if n <= rest.len() => FrameAt::Frame(n),
        _ if short => FrameAt::Truncated,
        _ => FrameAt::Bad("segment payload is not a valid zstd frame".into()),
    }
}

/// Decompresses one zstd frame, refusing more than [`MAX_PAYLOAD`] bytes of output.
///
/// # Errors
/// zstd errors (including checksum mismatch) or oversize output.
pub fn decompress(frame: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let dec = zstd::stream::read::Decoder::with_buffer(frame)
        .map_err(|e| format!("zstd: {e}"))?
        .single_frame();
    let mut out = Vec::new();
    dec.take(u64::from(MAX_PAYLOAD) + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    if out.len() > MAX_PAYLOAD as usize {
        return Err(format!(
            "segment decompresses to more than {MAX_PAYLOAD} bytes"
        ));
    }
    Ok(out)
}

/// Message signed by a seal record.
pub fn seal_message(session: &SessionId, records: u64, final_hash: &[u8; 32]) -> Vec<u8> {
    let mut m = b"dbwarden-seal-v1\0".to_vec();
    m.extend_from_slice(&session.0);
    m.extend_from_slice(&records.to_le_bytes());
    m.extend_from_slice(final_hash);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentHeader {
        SegmentHeader {
            version: FORMAT_VERSION,
            session_id: SessionId([7; 16]),
            seq: 2,
            first_record: 10,
            record_count: 5,
            raw_len: 100,
            payload_len: 50,
            prev_head: [1; 32],
            head: [2; 32],
            payload_hash: [3; 32],
            key_id: KeyId([0; 16]),
            signature: [0; 64],
        }
    }

    #[test]
    fn header_round_trip_and_signature() {
        let key = HostKey::from_seed([9; 32]);
        let mut h = sample();
        h.sign(&key);
        let frame = h.to_frame();
        assert_eq!(frame.len(), 8 + SEGMENT_HEADER_LEN);
        let HeaderAt::Header {
            header,
            payload_offset,
        } = header_at(&frame, 0)
        else {
            panic!("no header")
        };
        assert_eq!(*header, h);
        assert_eq!(payload_offset, frame.len());
        assert!(header.verify(key.public_key()));
        let other = HostKey::from_seed([8; 32]);
        assert!(!header.verify(other.public_key()));
        for cut in 1..frame.len() {
            assert!(matches!(
                header_at(&frame[..cut], 0),
                HeaderAt::Truncated { .. }
            ));
        }
        assert_eq!(header_at(&frame, frame.len()), HeaderAt::End);
    }

    #[test]
    fn lines_and_split() {
        let mut buf = Vec::new();
        push_line(&mut buf, &[0xaa; 32], b"{\"a\":1}");
        let ls = lines(&buf).unwrap();
        assert_eq!(ls.len(), 1);
        let (h, j) = split_line(ls[0]).unwrap();
        assert_eq!(h, [0xaa; 32]);
        assert_eq!(j, b"{\"a\":1}");
        assert!(lines(b"abc").is_err());
        assert!(split_line(b"short").is_err());
    }

    fn all_bodies() -> Vec<RecordBody> {
        use crate::model::*;
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("k\"ey".to_owned(), "v\u{1b}al\u{e9}".to_owned());
        let header = SessionHeader {
            session_id: SessionId([5; 16]),
            start: time::macros::datetime!(2026-11-26 02:15:00.123456789 +01:30),
            identity: Identity {
                pid: 1,
                uid: 2,
                user: None,
                cgroup: "/a".into(),
                exe: "/bin/x".into(),
                cmdline: vec!["x".into(), "\"q\"".into()],
                labels,
                privileged: true,
                capabilities: vec!["cap_sys_admin".into(), "c\"ap\u{1}".into()],
            },
            client_addr: "127.0.0.1:1".into(),
            original_dst: "[::1]:5432".into(),
            protocol: "postgresql".into(),
            database: Some("db".into()),
            db_user: None,
            daemon_version: "0.1.0".into(),
            policy_hash: "sha256:00".into(),
        };
        vec![
            RecordBody::Header(Box::new(header)),
            RecordBody::Statement(Statement {
                stmt: 1,
                text: "SELECT '\\n\n\t\u{2028}' -- é".into(),
                params: vec![Some("1".into()), None],
            }),
            RecordBody::Statement(Statement {
                stmt: 2,
                text: String::new(),
                params: Vec::new(),
            }),
            RecordBody::Statement(Statement {
                stmt: 4,
                text: "\u{0}\u{1f}\u{7f}\"\\\u{8}\u{c}\r".into(),
                params: vec![None, Some("\u{1}\"".into()), Some(String::new())],
            }),
            RecordBody::Decision(Decision {
                stmt: 1,
                action: Action::Allow,
                rule: Some("default".into()),
                approver: None,
                tags: Vec::new(),
                message: None,
            }),
            RecordBody::Decision(Decision {
                stmt: 1,
                action: Action::Deny,
                rule: None,
                approver: Some("bob".into()),
                tags: vec!["pci".into()],
                message: Some("no".into()),
            }),
            RecordBody::Response(ResponseSummary::default()),
            RecordBody::Exchange(Box::new(Exchange {
                statement: Statement {
                    stmt: 7,
                    text: "SELECT $1 -- \"q\"".into(),
                    params: vec![Some("x\ny".into())],
                },
                decision: Some(Decision {
                    stmt: 7,
                    action: Action::Hold,
                    rule: Some("r".into()),
                    approver: Some("alice".into()),
                    tags: vec!["pci".into(), "t\u{1}".into()],
                    message: None,
                }),
                response: ResponseSummary {
                    stmt: 7,
                    columns: vec!["c".into()],
                    rows: Some(1),
                    command_tag: Some("SELECT 1".into()),
                    duration_us: 3,
                    error: None,
                    data: vec![vec![None, Some("v".into())]],
                    truncated: None,
                },
            })),
            RecordBody::Exchange(Box::new(Exchange {
                statement: Statement {
                    stmt: 8,
                    text: String::new(),
                    params: Vec::new(),
                },
                decision: None,
                response: ResponseSummary::default(),
            })),
            RecordBody::Response(ResponseSummary {
                stmt: 3,
                columns: vec!["a".into()],
                rows: Some(u64::MAX),
                command_tag: Some("SELECT 1".into()),
                duration_us: 7,
                error: Some("boom".into()),
                data: vec![vec![Some("x".into()), None]],
                truncated: Some(Truncation {
                    after_rows: 1,
                    after_bytes: 1,
                    cap_rows: 1,
                    cap_bytes: 9,
                }),
            }),
            RecordBody::Rows(Rows {
                stmt: 1,
                columns: vec!["a".into(), "b".into()],
                rows: vec![vec![Some("1".into()), None], Vec::new()],
                truncated: Some(Truncation {
                    after_rows: 1,
                    after_bytes: 2,
                    cap_rows: 3,
                    cap_bytes: 4,
                }),
            }),
            RecordBody::Rows(Rows::default()),
            RecordBody::Notice(Notice {
                stmt: None,
                severity: "NOTICE".into(),
                message: "m".into(),
            }),
            RecordBody::Approval(Approval {
                stmt: 1,
                event: ApprovalKind::Decided,
                decision: Some(Action::Hold),
                approver: None,
                reason: Some("r".into()),
                waited_ms: Some(5),
            }),
            RecordBody::Gap(Gap { dropped: 9 }),
            RecordBody::End(End {
                reason: "client closed".into(),
                totals: Totals::default(),
            }),
            RecordBody::Seal(Seal {
                records: 4,
                final_hash: "00".into(),
                key_id: "11".into(),
                signature: "22".into(),
            }),
        ]
    }

    #[test]
    fn record_json_matches_serde_derive_byte_for_byte() {
        use crate::model::Record;
        let stamps = [
            time::macros::datetime!(2026-11-26 02:15:00 UTC),
            time::macros::datetime!(2026-11-26 02:15:00.5 UTC),
            time::macros::datetime!(1999-01-02 03:04:05.000000001 UTC),
        ];
        for (i, body) in all_bodies().into_iter().enumerate() {
            for (j, &ts) in stamps.iter().enumerate() {
                let n = [0, 1, u64::MAX][j];
                let rec = Record {
                    n,
                    ts,
                    body: body.clone(),
                };
                let want = serde_json::to_vec(&rec).unwrap();
                let mut got = b"prefix".to_vec();
                write_record_json(&mut got, n, ts.into(), &body).unwrap();
                assert_eq!(
                    &got[6..],
                    want.as_slice(),
                    "body {i} ts {j}: {}",
                    String::from_utf8_lossy(&got)
                );
            }
        }
    }

    #[test]
    fn record_json_error_restores_buffer() {
        // RFC 3339 cannot express the year 10000.
        let ts = Stamp::from_unix(253_402_300_800, 0);
        let body = RecordBody::Gap(crate::model::Gap { dropped: 1 });
        let mut buf = b"keep".to_vec();
        assert!(write_record_json(&mut buf, 1, ts, &body).is_err());
        assert_eq!(buf, b"keep");
    }

    #[test]
    fn frames_and_decompress() {
        let c = zstd::bulk::compress(b"hello world", 3).unwrap();
        let mut file = c.clone();
        file.extend_from_slice(b"trailing");
        assert_eq!(payload_frame(&file, 0, 5), FrameAt::Frame(c.len()));
        assert_eq!(decompress(&file[..c.len()]).unwrap(), b"hello world");
        assert_eq!(
            payload_frame(&c[..c.len() - 2], 0, u32::try_from(c.len()).unwrap()),
            FrameAt::Truncated
        );
        assert!(matches!(payload_frame(b"nope", 0, 4), FrameAt::Bad(_)));
        assert!(decompress(b"garbage!").is_err());
    }
}
