//! Format stability: a deterministic session (fixed key, ids and timestamps)
//! must keep exactly the bytes the format-v1 writer produced before the
//! in-place serialization rewrite (digest taken from the earlier writer), except that
//! decisions and responses no longer spell out absent optional fields as `null`, and segments
//! are compressed as streaming frames (no content size in the frame header, a 128 KiB window,
//! a smaller match table, no content checksum). The digest was re-taken at each of those
//! changes; readers accept all of them. The record lines themselves (what `zstd -d` prints)
//! have their own digest, which no compressor setting may change. Both were re-taken when the
//! header's identity gained `"privileged":false,"capabilities":[]` (37 bytes; with those two
//! fields left out the earlier digests come back unchanged, and headers without them still
//! read, as non-privileged).

mod common;

use dbwarden_record::format;
use std::fmt::Write as _;

const GOLDEN_LEN: usize = 35_521;
const GOLDEN_SHA256: &str = "2d303c4ba1197831914e12d6b16055e4a4d0bd2ccd327d7ffa95d2b1cb74e70f";
/// The decompressed record lines, unchanged since the identity gained its privilege fields.
const LINES_LEN: usize = 151_345;
const LINES_SHA256: &str = "b1e5b9c122fd96cb4b51e000c33a1a8eda21c5c4e6d754b08499383871bf7087";

/// SHA-256 of `b` (`chain` is SHA-256(prev ‖ data); with an all-zero prev it
/// is just a stable digest of the file).
fn digest(b: &[u8]) -> String {
    format::chain(&[0; 32], b)
        .iter()
        .fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

#[test]
fn writer_output_is_byte_identical_to_format_v1_golden() {
    let key = common::key(1);
    let file = common::build(&key, 1, 200, 50, true);
    let lines = zstd::stream::decode_all(&file[..]).unwrap();
    assert_eq!(
        (lines.len(), digest(&lines).as_str()),
        (LINES_LEN, LINES_SHA256)
    );
    assert_eq!(
        (file.len(), digest(&file).as_str()),
        (GOLDEN_LEN, GOLDEN_SHA256)
    );
    // And it still verifies.
    let report = common::check(&file, &[key.public_key().clone()]);
    assert!(report.is_ok(), "{report:?}");
}
