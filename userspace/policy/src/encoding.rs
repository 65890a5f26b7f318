//! Client encodings dbwarden refuses.
//!
//! PostgreSQL accepts, as client encodings only, a few multibyte encodings whose second byte
//! may be an ASCII byte such as `\` (0x5c) or `'` (0x27): SJIS (and its aliases), BIG5, GBK,
//! GB18030, UHC and JOHAB. In such a session the server reads the byte pair as one character
//! while any byte-oriented lexer sees a backslash or a quote, so a statement can be split or
//! quoted differently than it was judged. They are refused wherever a session could take one:
//! the startup packet, `options`, `SET client_encoding` / `SET NAMES`, and the server's own
//! ParameterStatus report.

/// PostgreSQL's own spelling rule for encoding names (`clean_encoding_name`): case and every
/// non-alphanumeric character are ignored.
fn clean(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Every name PostgreSQL accepts for those encodings (src/common/encnames.c), cleaned.
const UNSAFE: &[&str] = &[
    "sjis",
    "shiftjis",
    "mskanji",
    "win932",
    "windows932",
    "shiftjis2004",
    "big5",
    "win950",
    "windows950",
    "gbk",
    "win936",
    "windows936",
    "gb18030",
    "uhc",
    "win949",
    "windows949",
    "johab",
];

/// Whether `name` names a client encoding that dbwarden refuses.
#[must_use]
pub fn unsafe_client_encoding(name: &str) -> bool {
    let c = clean(name);
    UNSAFE.contains(&c.as_str())
}

/// The encoding family of an unsafe name, cleaned (`sjis`, `big5`, `gbk`, `gb18030`, `uhc`,
/// `johab`), or `None` for any other name.
#[must_use]
pub fn family(name: &str) -> Option<&'static str> {
    let c = clean(name);
    Some(match c.as_str() {
        "sjis" | "shiftjis" | "mskanji" | "win932" | "windows932" | "shiftjis2004" => "sjis",
        "big5" | "win950" | "windows950" => "big5",
        "gbk" | "win936" | "windows936" => "gbk",
        "gb18030" => "gb18030",
        "uhc" | "win949" | "windows949" => "uhc",
        "johab" => "johab",
        _ => return None,
    })
}

/// Whether dbwarden can read statements in this unsafe encoding exactly as the server does
/// (it decodes them first, strictly: a byte pair its decoder does not map fails the session,
/// and one the server cannot convert fails at the server). JOHAB has no decoder here.
#[must_use]
pub fn decodable(name: &str) -> bool {
    family(name).is_some_and(|f| f != "johab")
}

/// The reason given to the agent.
#[must_use]
pub fn refusal(name: &str) -> String {
    let shown: String = name.chars().filter(|c| !c.is_control()).take(40).collect();
    format!(
        "dbwarden: client encoding \"{shown}\" is refused: its multibyte characters can end in a quote or backslash byte, so the server could read a statement differently than it was judged; use UTF8 (or ask the operator to allow it in the policy: [policy] client_encodings)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_spellings() {
        for n in [
            "SJIS",
            "sjis",
            "Shift_JIS",
            "MS_Kanji",
            "WIN932",
            "big5",
            "GB-18030",
            "gbk",
            "UHC",
            "johab",
            "SHIFT_JIS_2004",
            "Windows949",
        ] {
            assert!(unsafe_client_encoding(n), "{n}");
        }
        for n in [
            "UTF8",
            "utf-8",
            "LATIN1",
            "WIN1252",
            "EUC_JP",
            "EUC_KR",
            "SQL_ASCII",
            "KOI8R",
        ] {
            assert!(!unsafe_client_encoding(n), "{n}");
        }
    }
}
