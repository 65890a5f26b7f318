//! Format stability: a deterministic session (fixed key, ids and timestamps)
//! must keep exactly the bytes the format-v1 writer produced before the
//! in-place serialization rewrite (digest taken from the earlier writer).

mod common;

use dbwarden_record::format;
use std::fmt::Write as _;

const GOLDEN_LEN: usize = 36_054;
const GOLDEN_SHA256: &str = "3b8de5ddcee9f256e6c993f07b0c65d3ebeac08aa6887939136460e9a60b30cd";

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
    assert_eq!(file.len(), GOLDEN_LEN);
    assert_eq!(digest(&file), GOLDEN_SHA256);
    // And it still verifies.
    let report = common::check(&file, &[key.public_key().clone()]);
    assert!(report.is_ok(), "{report:?}");
}
