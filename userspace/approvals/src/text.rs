//! Hostile-text hygiene: everything the agent controls (statement, executable path, ...)
//! passes through here before a human or a webhook sees it.
//!
//! Control characters are stripped (they could rewrite a terminal or forge log lines), as are
//! the Unicode format characters that reorder or hide text (bidi overrides and isolates,
//! zero-width characters, line/paragraph separators). Long text is truncated on a character
//! boundary with a visible marker.

/// Maximum characters of statement text kept in views, journal and notifications.
pub const MAX_STATEMENT_CHARS: usize = 4000;
/// Maximum characters of an approver name.
pub const MAX_APPROVER_CHARS: usize = 64;
/// Maximum characters of a reason.
pub const MAX_REASON_CHARS: usize = 500;
/// Maximum characters of other short fields (rule, identity, target).
pub const MAX_FIELD_CHARS: usize = 512;

/// True for characters that can hide, reorder or forge text when displayed.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM/RLM
        | '\u{2028}' | '\u{2029}' // line / paragraph separator
        | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}' // bidi isolates
        | '\u{FEFF}'              // BOM / zero-width no-break space
        | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
    )
}

fn clean(s: &str, max_chars: usize, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars.saturating_mul(4)));
    let mut kept = 0usize;
    let mut dropped_tail = 0usize;
    for c in s.chars() {
        let mapped = match c {
            '\n' if keep_newlines => Some('\n'),
            '\n' | '\t' | '\r' => Some(' '),
            c if c.is_control() || is_invisible_format(c) => None,
            c => Some(c),
        };
        let Some(m) = mapped else { continue };
        if kept < max_chars {
            out.push(m);
            kept += 1;
        } else {
            dropped_tail += 1;
        }
    }
    if dropped_tail > 0 {
        out.push_str(&format!(" …[truncated {dropped_tail} chars]"));
    }
    out
}

/// Cleans multi-line text (statements): keeps `\n`, turns tabs and `\r` into spaces, strips
/// control and invisible format characters, truncates to `max_chars` characters.
#[must_use]
pub fn sanitize_text(s: &str, max_chars: usize) -> String {
    clean(s, max_chars, true)
}

/// Like [`sanitize_text`] but single-line: newlines become spaces.
#[must_use]
pub fn sanitize_line(s: &str, max_chars: usize) -> String {
    clean(s, max_chars, false)
}

/// Cleans an optional reason: single line, bounded; an empty/blank reason becomes `None`.
#[must_use]
pub fn sanitize_reason(r: Option<&str>) -> Option<String> {
    let r = sanitize_line(r?, MAX_REASON_CHARS);
    let t = r.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_controls_and_invisible_format() {
        let s = "SELECT 1\u{1b}[2J;\r\n\tFROM t\u{202E}gnp.exe\u{200B}\u{7f}\u{85}";
        assert_eq!(sanitize_text(s, 100), "SELECT 1[2J; \n FROM tgnp.exe");
        assert_eq!(sanitize_line(s, 100), "SELECT 1[2J;   FROM tgnp.exe");
    }

    #[test]
    fn truncates_on_char_boundary_with_marker() {
        let s = "é".repeat(10);
        assert_eq!(sanitize_text(&s, 4), "éééé …[truncated 6 chars]");
        assert_eq!(sanitize_text("abc", 3), "abc");
    }

    #[test]
    fn reason_blank_is_none() {
        assert_eq!(sanitize_reason(Some("  \u{7}  ")), None);
        assert_eq!(sanitize_reason(None), None);
        assert_eq!(sanitize_reason(Some(" ok\n")).as_deref(), Some("ok"));
        let long = "x".repeat(MAX_REASON_CHARS + 5);
        assert!(sanitize_reason(Some(&long))
            .unwrap()
            .contains("truncated 5 chars"));
    }
}
