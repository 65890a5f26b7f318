//! Glob patterns for the policy matchers.
//!
//! * [`GlobList`]: a list of globs over plain strings (cgroup paths, exe
//!   paths, database names...). Matches if any glob matches.
//! * [`NamePattern`]: a glob over a dotted SQL object name
//!   (`schema.table`, `db.table`, `schema.function`). Each dot-separated part
//!   is its own glob and parts are compared from the right, so
//!   `*card*` matches `cards`, `public.cards` and `billing.card_data`, while
//!   `billing.*` matches `billing.cards`. A name written **without** a schema
//!   in the SQL (`cards`) could resolve through the search path to any schema,
//!   so it matches `billing.cards` too (fail closed).
//!
//! SQL names are matched case-insensitively; strings in identity/target
//! matchers case-sensitively, except where the docs of a matcher say so.

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

/// Builds one glob. `Err` carries the reason for the policy error.
fn glob(glob: &str, case_insensitive: bool) -> Result<Glob, String> {
    if glob.is_empty() {
        return Err("empty pattern".to_owned());
    }
    GlobBuilder::new(glob)
        .case_insensitive(case_insensitive)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("invalid glob {glob:?}: {}", e.kind()))
}

fn compile(g: &str, case_insensitive: bool) -> Result<GlobMatcher, String> {
    glob(g, case_insensitive).map(|g| g.compile_matcher())
}

/// One `GlobSet` over `globs` (a single automaton: faster than trying each
/// glob when most candidates do not match).
fn set(globs: &[Glob]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(g.clone());
    }
    b.build().map_err(|e| format!("invalid glob set: {e}"))
}

/// A list of string globs; matches if any matches.
#[derive(Debug, Clone)]
pub struct GlobList {
    set: GlobSet,
    globs: Vec<GlobMatcher>,
    source: Vec<String>,
}

impl GlobList {
    /// Compiles `patterns`.
    ///
    /// # Errors
    /// A message naming the first invalid glob.
    pub fn new(patterns: &[String], case_insensitive: bool) -> Result<Self, String> {
        let raw = patterns
            .iter()
            .map(|p| glob(p, case_insensitive))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GlobList {
            set: set(&raw)?,
            globs: raw.iter().map(Glob::compile_matcher).collect(),
            source: patterns.to_vec(),
        })
    }

    /// Whether any glob matches `s`.
    #[must_use]
    pub fn is_match(&self, s: &str) -> bool {
        self.set.is_match(s)
    }

    /// The first pattern (source text) that matches `s`.
    #[must_use]
    pub fn matching(&self, s: &str) -> Option<&str> {
        if !self.set.is_match(s) {
            return None;
        }
        self.globs
            .iter()
            .position(|g| g.is_match(s))
            .map(|i| self.source[i].as_str())
    }
}

/// A dotted object-name glob (see the module docs).
#[derive(Debug, Clone)]
pub struct NamePattern {
    parts: Vec<GlobMatcher>,
    source: String,
}

impl NamePattern {
    /// Compiles `pattern` (`schema.table`, `*card*`, `"Odd.Name"` is not
    /// supported: dots always separate parts).
    ///
    /// # Errors
    /// A message naming the invalid part.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let parts = pattern
            .split('.')
            .map(|p| compile(p, true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                if pattern.split('.').any(str::is_empty) {
                    format!("invalid name pattern {pattern:?}: empty part")
                } else {
                    e
                }
            })?;
        if parts.len() > 3 {
            return Err(format!(
                "invalid name pattern {pattern:?}: at most 3 dotted parts (db.schema.name)"
            ));
        }
        Ok(NamePattern {
            parts,
            source: pattern.to_owned(),
        })
    }

    /// The pattern as written in the policy.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches the object name `parts` (already
    /// normalized, see `analyze`). Compared from the right; missing
    /// qualifiers in the SQL name match anything.
    #[must_use]
    pub fn is_match(&self, parts: &[String]) -> bool {
        if parts.is_empty() {
            return false;
        }
        self.parts
            .iter()
            .rev()
            .zip(parts.iter().rev())
            .all(|(g, p)| g.is_match(p))
    }
}

/// A list of [`NamePattern`]s, with a prefilter over their last parts.
#[derive(Debug, Clone)]
pub struct NameList {
    patterns: Vec<NamePattern>,
    /// Matches a name's last part if any pattern's last part does: a name
    /// that fails it cannot match any pattern.
    last: GlobSet,
}

impl NameList {
    /// Compiles `patterns`.
    ///
    /// # Errors
    /// A message naming the first invalid pattern.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let compiled = patterns
            .iter()
            .map(|p| NamePattern::new(p))
            .collect::<Result<Vec<_>, _>>()?;
        let lasts = patterns
            .iter()
            .map(|p| glob(p.rsplit('.').next().unwrap_or(p), true))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NameList {
            patterns: compiled,
            last: set(&lasts)?,
        })
    }

    /// The first `(pattern, name)` pair that matches among `names`.
    #[must_use]
    pub fn first_match<'n>(&self, names: &'n [Vec<String>]) -> Option<(&str, &'n [String])> {
        for n in names {
            if !n.last().is_some_and(|l| self.last.is_match(l)) {
                continue;
            }
            for p in &self.patterns {
                if p.is_match(n) {
                    return Some((p.source(), n));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Vec<String> {
        s.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn unqualified_pattern_matches_any_schema() {
        let p = NamePattern::new("*card*").unwrap();
        assert!(p.is_match(&n("cards")));
        assert!(p.is_match(&n("public.cards")));
        assert!(p.is_match(&n("billing.card_data")));
        assert!(p.is_match(&n("CARDS")), "case-insensitive");
        assert!(!p.is_match(&n("orders")));
        assert!(
            !p.is_match(&n("card_schema.orders")),
            "schema alone does not match"
        );
    }

    #[test]
    fn qualified_pattern() {
        let p = NamePattern::new("billing.*").unwrap();
        assert!(p.is_match(&n("billing.cards")));
        assert!(!p.is_match(&n("public.cards")));
        assert!(
            p.is_match(&n("cards")),
            "unqualified name may resolve to billing"
        );
        assert!(p.is_match(&n("db.billing.x")));
    }

    #[test]
    fn invalid_patterns() {
        assert!(NamePattern::new("a[").is_err());
        assert!(NamePattern::new("a..b").unwrap_err().contains("empty part"));
        assert!(NamePattern::new("a.b.c.d").is_err());
        assert!(GlobList::new(&["{a".to_owned()], false).is_err());
    }

    #[test]
    fn glob_list() {
        let g = GlobList::new(&["/agents/*".to_owned(), "*ci*".to_owned()], false).unwrap();
        assert!(g.is_match("/agents/a/b.scope"));
        assert_eq!(g.matching("/x/ci-runner"), Some("*ci*"));
        assert!(!g.is_match("/system.slice/sshd"));
    }
}
