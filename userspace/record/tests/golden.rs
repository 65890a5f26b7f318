//! Format stability: a deterministic session (fixed key, ids and timestamps)
//! must keep exactly the bytes the format-v1 writer produced before the
//! in-place serialization rewrite (digest taken from the earlier writer), except that
//! decisions and responses no longer spell out absent optional fields as `null`, and segments
//! are compressed as streaming frames (no content size in the frame header, a 128 KiB window,
//! a smaller match table). The digest was re-taken at each of those changes; readers accept
//! all of them.

mod common;

use dbwarden_record::format;
use std::fmt::Write as _;

const GOLDEN_LEN: usize = 35_538;
const GOLDEN_SHA256: &str = "30b088903ec6b0eaabf4a683d1ea37248d9fbf3f55b4f0cb1534819cb2db5164";

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
    assert_eq!(
        (file.len(), digest(&file).as_str()),
        (GOLDEN_LEN, GOLDEN_SHA256)
    );
    // And it still verifies.
    let report = common::check(&file, &[key.public_key().clone()]);
    assert!(report.is_ok(), "{report:?}");
}
