//! The client encoding text fields arrive in. PostgreSQL converts between the client encoding
//! and the server's, so query strings, names and error messages on the wire are in whatever
//! the session's `client_encoding` is (the server reports it in ParameterStatus at startup and
//! on every change). Decoding them with that encoding is what lets a LATIN1, WIN1252 or EUC_JP
//! client work, and what makes a non-ASCII table name the policy sees the one the server sees.
//!
//! Encodings whose multibyte characters can hold an ASCII quote or backslash byte (SJIS, BIG5,
//! GBK, GB18030, UHC, JOHAB) are refused unless a policy allows them (see
//! `dbwarden_policy::encoding`); then they are decoded strictly, so `0x83 0x5C` is the one
//! character the server reads, never a backslash. In every other encoding an ASCII byte is
//! always that character, so the statement's structure (quotes, `;`, comments) is the same
//! whatever the decoding; encodings encoding_rs does not know (EUC_TW, EUC_JIS_2004, MULE_INTERNAL) and
//! SQL_ASCII are decoded byte for byte into private-use characters, which keeps that structure
//! and tells names apart.
//!
//! Messages the proxy builds itself (refusals, masked errors and notices, masked row
//! descriptions) are written in UTF-8.

use encoding_rs::Encoding;

/// How text fields are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TextEncoding {
    enc: Option<&'static Encoding>,
    /// The client encoding's multibyte characters can end in an ASCII byte.
    ascii_trail: bool,
}

impl TextEncoding {
    /// UTF-8 (the default, and PostgreSQL's usual client encoding).
    pub const UTF8: TextEncoding = TextEncoding {
        enc: None,
        ascii_trail: false,
    };

    /// Whether the client encoding's multibyte characters can end in an ASCII byte (SJIS,
    /// BIG5, GBK, GB18030, UHC): a session in one must not change encodings mid-way, since a
    /// statement pipelined behind the change would be decoded the old way.
    #[must_use]
    pub fn has_ascii_trail_bytes(self) -> bool {
        self.ascii_trail
    }

    /// The decoding of PostgreSQL's encoding `name` (as in ParameterStatus `client_encoding`;
    /// case, `_` and `-` ignored).
    #[must_use]
    pub fn from_pg_name(name: &str) -> TextEncoding {
        let n: String = name
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        use encoding_rs as e;
        let enc: &'static Encoding = match n.as_str() {
            "UTF8" | "UNICODE" => return TextEncoding::UTF8,
            // encoding_rs follows WHATWG, where ISO-8859-1 and -9 are their Windows supersets:
            // the same bytes decode to the same characters outside 0x80-0x9F.
            "LATIN1" | "ISO88591" | "WIN1252" => e::WINDOWS_1252,
            "LATIN2" | "ISO88592" => e::ISO_8859_2,
            "LATIN3" | "ISO88593" => e::ISO_8859_3,
            "LATIN4" | "ISO88594" => e::ISO_8859_4,
            "LATIN5" | "ISO88599" | "WIN1254" => e::WINDOWS_1254,
            "LATIN6" | "ISO885910" => e::ISO_8859_10,
            "LATIN7" | "ISO885913" => e::ISO_8859_13,
            "LATIN8" | "ISO885914" => e::ISO_8859_14,
            "LATIN9" | "ISO885915" => e::ISO_8859_15,
            "LATIN10" | "ISO885916" => e::ISO_8859_16,
            "ISO88595" => e::ISO_8859_5,
            "ISO88596" => e::ISO_8859_6,
            "ISO88597" => e::ISO_8859_7,
            "ISO88598" => e::ISO_8859_8,
            "WIN1250" => e::WINDOWS_1250,
            "WIN1251" => e::WINDOWS_1251,
            "WIN1253" => e::WINDOWS_1253,
            "WIN1255" => e::WINDOWS_1255,
            "WIN1256" => e::WINDOWS_1256,
            "WIN1257" => e::WINDOWS_1257,
            "WIN1258" => e::WINDOWS_1258,
            "WIN866" | "ALT" => e::IBM866,
            "WIN874" => e::WINDOWS_874,
            "KOI8R" | "KOI8" => e::KOI8_R,
            "KOI8U" => e::KOI8_U,
            "EUCJP" => e::EUC_JP,
            "EUCKR" => e::EUC_KR,
            "EUCCN" => e::GBK,
            // Client-only encodings whose trailing bytes can be ASCII: allowed only by a
            // policy, and then decoded strictly (see `dbwarden_policy::encoding`).
            "SJIS" | "SHIFTJIS2004" | "BIG5" | "GBK" | "GB18030" | "UHC" => {
                let enc = match n.as_str() {
                    "BIG5" => e::BIG5,
                    "GBK" => e::GBK,
                    "GB18030" => e::GB18030,
                    "UHC" => e::EUC_KR,
                    _ => e::SHIFT_JIS,
                };
                return TextEncoding {
                    enc: Some(enc),
                    ascii_trail: true,
                };
            }
            _ => e::X_USER_DEFINED,
        };
        TextEncoding {
            enc: Some(enc),
            ascii_trail: false,
        }
    }

    /// Whether text is UTF-8.
    #[must_use]
    pub fn is_utf8(self) -> bool {
        self.enc.is_none()
    }

    /// The decoder's name (for messages).
    #[must_use]
    pub fn name(self) -> &'static str {
        self.enc.map_or("UTF-8", Encoding::name)
    }

    /// Decodes `b`; `None` if it is malformed in this encoding (the server would refuse it
    /// too: it verifies client input before parsing it).
    pub(crate) fn decode(self, b: &[u8]) -> Option<String> {
        match self.enc {
            None => std::str::from_utf8(b).ok().map(str::to_owned),
            Some(e) => e
                .decode_without_bom_handling_and_without_replacement(b)
                .map(std::borrow::Cow::into_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_names_and_structure() {
        let l1 = TextEncoding::from_pg_name("LATIN1");
        assert_eq!(l1.decode(b"select '\xe9t\xe9'").unwrap(), "select 'été'");
        assert!(TextEncoding::from_pg_name("utf8").is_utf8());
        let jp = TextEncoding::from_pg_name("EUC_JP");
        assert_eq!(jp.decode(b"'\xa4\xa2'").unwrap(), "'あ'");
        assert!(jp.decode(b"'\xa4'").is_none(), "truncated character");
        // Unknown to encoding_rs: every byte kept apart, ASCII as itself.
        let tw = TextEncoding::from_pg_name("EUC_TW");
        let s = tw.decode(b"'\x8e\xa2';").unwrap();
        assert!(s.starts_with('\'') && s.ends_with("';") && s.chars().count() == 5);
        assert!(TextEncoding::UTF8.decode(b"\xe9").is_none());
        // SJIS: 0x83 0x5C is one katakana, not a backslash.
        let sjis = TextEncoding::from_pg_name("SJIS");
        assert_eq!(sjis.decode(b"E'\x83\x5c'").unwrap(), "E'\u{30bd}'");
        assert!(sjis.has_ascii_trail_bytes() && !jp.has_ascii_trail_bytes());
        assert!(!TextEncoding::from_pg_name("EUC_KR").has_ascii_trail_bytes());
    }
}
