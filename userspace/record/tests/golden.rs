//! Format stability: a deterministic session (fixed key, ids and timestamps)
//! must keep exactly the bytes the format-v1 writer produced before the
//! in-place serialization rewrite (digest taken from the earlier writer), except that
//! decisions and responses no longer spell out absent optional fields as `null`, and segments
//! are compressed as streaming frames (no content size in the frame header, a 128 KiB window,
//! a smaller match table, no content checksum). The digest was re-taken at each of those
//! changes; readers accept all of them. The record lines themselves (what `zstd -d` prints)
//! have their own digest, which no compressor setting may change.

mod common;

use dbwarden_record::format;
use std::fmt::Write as _;

const GOLDEN_LEN: usize = 35_524;
const GOLDEN_SHA256: &str = "55f3eec5917bb08311d4c0a1f36606b4011798987005d7bac7191b5e8df25df3";
/// The decompressed record lines, unchanged since the streaming-frame change.
const LINES_LEN: usize = 151_308;
const LINES_SHA256: &str = "64720d0b78918082dd0ecab6a678a3bbceb999931d9ad622be15185d5a4b1a8a";

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
