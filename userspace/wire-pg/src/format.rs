//! Value format codes (text or binary) used by Bind, RowDescription and the COPY responses.

/// How a value is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Text representation (format code 0).
    Text,
    /// Binary representation (format code 1): e.g. an int8 is 8 big-endian bytes.
    Binary,
}

impl Format {
    /// Maps a wire format code; `None` for codes other than 0 and 1.
    #[must_use]
    pub fn from_code(code: i16) -> Option<Format> {
        match code {
            0 => Some(Format::Text),
            1 => Some(Format::Binary),
            _ => None,
        }
    }

    /// The wire format code.
    #[must_use]
    pub fn code(self) -> i16 {
        match self {
            Format::Text => 0,
            Format::Binary => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for f in [Format::Text, Format::Binary] {
            assert_eq!(Format::from_code(f.code()), Some(f));
        }
        assert_eq!(Format::from_code(2), None);
        assert_eq!(Format::from_code(-1), None);
    }
}
