//! Case-insensitive glob matching for column and table names (`*` = any run, `?` = one character).

/// A compiled, lowercased glob pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Glob {
    pat: Vec<char>,
}

impl Glob {
    /// Compile `pattern` (already validated as non-empty by the config layer).
    pub(crate) fn new(pattern: &str) -> Glob {
        Glob {
            pat: pattern.chars().flat_map(char::to_lowercase).collect(),
        }
    }

    /// Whether `name` matches, ignoring case. Linear time (greedy star with backtracking to the last
    /// star only), so hostile identifiers cannot make it blow up.
    pub(crate) fn matches(&self, name: &str) -> bool {
        // Column names are almost always ASCII: lowercase on the fly, no allocation (this runs
        // once per result set on the response path).
        if name.is_ascii() {
            let b = name.as_bytes();
            return self.matches_with(b.len(), |i| char::from(b[i].to_ascii_lowercase()));
        }
        let text: Vec<char> = name.chars().flat_map(char::to_lowercase).collect();
        self.matches_with(text.len(), |i| text[i])
    }

    fn matches_with(&self, len: usize, t: impl Fn(usize) -> char) -> bool {
        let p = &self.pat;
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < len {
            if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t(ti))) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn globs() {
        let g = Glob::new("*card_number*");
        assert!(g.matches("card_number"));
        assert!(g.matches("Customer_CARD_NUMBER_enc"));
        assert!(!g.matches("cardnumber"));
        assert!(Glob::new("cvv").matches("CVV"));
        assert!(!Glob::new("cvv").matches("cvv2"));
        assert!(Glob::new("cv?").matches("cvc"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a*b*c").matches("axxbyyc"));
        assert!(!Glob::new("a*b*c").matches("axxbyy"));
        let long = "a".repeat(5000);
        assert!(!Glob::new("*a*a*a*a*b").matches(&long));
        // Non-ASCII names take the Unicode path and still ignore case.
        assert!(Glob::new("*número*").matches("CARD_NÚMERO"));
        assert!(!Glob::new("*número*").matches("card_numero"));
    }
}
