//! PAN scanner for tests: proves no card number reached a session file.
//!
//! The recorder writes what it is given; the daemon masks first. Daemon tests
//! call [`scan_session_file`] on the files they produced and assert it finds
//! nothing. A hit is a run of 13–19 digits (single spaces or dashes allowed
//! between digits) that is not glued to letters or further digits and passes
//! Luhn. Hits never contain the number itself, only where it is and its last 4.

use crate::error::{RecordError, Result};
use crate::format::{self, FrameAt, HeaderAt};
use std::path::Path;

/// A Luhn-valid card-number-like run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanHit {
    /// Segment (for files) in which it was found.
    pub segment: u64,
    /// Byte offset inside the decompressed text.
    pub offset: usize,
    /// Number of digits.
    pub digits: usize,
    /// Last four digits (enough to locate it, not to use it).
    pub last4: String,
}

/// Luhn check over ASCII digits.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Finds Luhn-valid 13–19 digit runs in `text`.
pub fn find_pans(text: &[u8]) -> Vec<PanHit> {
    let mut hits = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() || (i > 0 && text[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        // Collect a run of digits with single separators.
        let start = i;
        let mut digits = Vec::new();
        let mut j = i;
        let mut end = i;
        while j < text.len() {
            let c = text[j];
            if c.is_ascii_digit() {
                digits.push(c);
                j += 1;
                end = j;
            } else if (c == b' ' || c == b'-')
                && j + 1 < text.len()
                && text[j + 1].is_ascii_digit()
                && !digits.is_empty()
            {
                j += 1;
            } else {
                break;
            }
        }
        let glued = end < text.len() && text[end].is_ascii_alphabetic();
        if !glued && (13..=19).contains(&digits.len()) && luhn_valid(&digits) {
            hits.push(PanHit {
                segment: 0,
                offset: start,
                digits: digits.len(),
                last4: String::from_utf8_lossy(&digits[digits.len() - 4..]).into_owned(),
            });
        }
        i = end.max(i + 1);
    }
    hits
}

/// Decompresses every segment of a session file and scans the record text.
/// Also scans the raw file bytes outside segments (garbage would be suspect too).
///
/// # Errors
/// When the file cannot be read or a segment cannot be decompressed (a file
/// that cannot be scanned must not pass as clean).
pub fn scan_session_file(path: impl AsRef<Path>) -> Result<Vec<PanHit>> {
    let path = path.as_ref();
    let data = std::fs::read(path).map_err(|e| RecordError::io("read session file", path, e))?;
    let bad = |reason: String| RecordError::Format {
        path: path.into(),
        reason,
    };
    let mut hits = Vec::new();
    let mut off = 0;
    let mut seg = 0;
    loop {
        let (h, poff) = match format::header_at(&data, off) {
            HeaderAt::End => break,
            HeaderAt::Header {
                header,
                payload_offset,
            } => (header, payload_offset),
            HeaderAt::Truncated { .. } | HeaderAt::Malformed(_) => {
                // Unparseable tail: scan it raw.
                hits.extend(find_pans(&data[off..]).into_iter().map(|mut p| {
                    p.segment = seg;
                    p
                }));
                break;
            }
        };
        let len = match format::payload_frame(&data, poff, h.payload_len) {
            FrameAt::Frame(n) => n,
            FrameAt::Truncated => break,
            FrameAt::Bad(d) => return Err(bad(format!("segment {seg}: {d}"))),
        };
        let raw = format::decompress(&data[poff..poff + len])
            .map_err(|d| bad(format!("segment {seg}: {d}")))?;
        hits.extend(find_pans(&raw).into_iter().map(|mut p| {
            p.segment = seg;
            p
        }));
        off = poff + len;
        seg += 1;
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pans_and_ignores_masked_and_hex() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(!luhn_valid(b"4111111111111112"));
        let t = b"card 4111111111111111 and 4111 1111 1111 1111, masked 411111******1111";
        let h = find_pans(t);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[0].last4, "1111");
        assert_eq!(h[1].digits, 16);
        // Inside a hex hash: glued to letters, ignored.
        assert!(find_pans(b"ab4111111111111111cd").is_empty());
        assert!(find_pans(b"x=4111111111111112;").is_empty());
        assert_eq!(find_pans(b"\"5500-0000-0000-0004\"").len(), 1);
    }
}
