//! The `[masking]` table of the policy file: raw schema, defaults and validation.
//!
//! ```toml
//! [masking]
//! detectors = ["pan", "ssn", "iban"]   # built-in content detectors (default: these three)
//! default_strategy = "last4"           # optional: one strategy for every content detector
//! builtin_column_rules = true          # keep the shipped CVV/PAN/PIN column rules (default true)
//!
//! [masking.strategies]                 # optional per-detector override
//! ssn = "redact"
//!
//! [[masking.columns]]
//! column = "*card_number*"             # glob on the column name, case-insensitive
//! table = "*"                          # optional glob on the table name
//! strategy = "last4"
//!
//! [[masking.custom]]
//! name = "employee-id"
//! regex = "EMP-[0-9]{6}"
//! strategy = "redact"                  # optional, default "redact"
//! ```
//!
//! Strategy precedence for content hits: `strategies.<detector>` > `default_strategy` > the built-in
//! default (pan → last4, iban → last4, ssn → redact, email → redact). Column rules are tried in file
//! order, then the built-in rules; the first match wins. The policy crate ignores `masking`; only this
//! crate reads it. A missing table yields [`MaskConfig::default`] (pan + ssn + iban, built-in column
//! rules), never "no masking".

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::strategy::Strategy;

/// Maximum compiled size of one custom regex (bytes), so a policy cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A built-in content detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Detector {
    /// Payment card numbers (IIN + Luhn, 13–19 digits).
    Pan,
    /// US social security numbers, dashed form only.
    Ssn,
    /// International bank account numbers (mod-97).
    Iban,
    /// Email addresses.
    Email,
}

impl Detector {
    /// Strategy used when the configuration names none.
    pub fn default_strategy(self) -> Strategy {
        match self {
            Detector::Pan | Detector::Iban => Strategy::Last4,
            Detector::Ssn | Detector::Email => Strategy::Redact,
        }
    }

    /// Lowercase name as written in the policy.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Pan => "pan",
            Detector::Ssn => "ssn",
            Detector::Iban => "iban",
            Detector::Email => "email",
        }
    }
}

/// One column rule: values of matching columns are masked whole, whatever they contain.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRuleConfig {
    /// Glob on the column name (`*`, `?`), case-insensitive.
    pub column: Spanned<String>,
    /// Optional glob on the table name; `None` matches every table, including an unknown one.
    #[serde(default)]
    pub table: Option<Spanned<String>>,
    /// Strategy for the whole value.
    pub strategy: Strategy,
}

/// A custom regex detector declared in the policy.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetectorConfig {
    /// Name reported in findings; unique, not a built-in detector name.
    pub name: Spanned<String>,
    /// Regex (Rust `regex` syntax) matched against the raw bytes.
    pub regex: Spanned<String>,
    /// Strategy for matches (default `redact`).
    #[serde(default = "redact")]
    pub strategy: Strategy,
}

fn redact() -> Strategy {
    Strategy::Redact
}

fn default_detectors() -> Vec<Detector> {
    vec![Detector::Pan, Detector::Ssn, Detector::Iban]
}

fn yes() -> bool {
    true
}

/// The parsed `[masking]` table. Build a [`crate::Masker`] from it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    /// Built-in content detectors to run.
    #[serde(default = "default_detectors")]
    pub detectors: Vec<Detector>,
    /// Strategy for every content detector without a per-detector override.
    #[serde(default)]
    pub default_strategy: Option<Strategy>,
    /// Per-detector strategy overrides.
    #[serde(default)]
    pub strategies: BTreeMap<Detector, Strategy>,
    /// Whether the shipped column rules ([`builtin_column_rules`]) apply after the configured ones.
    #[serde(default = "yes")]
    pub builtin_column_rules: bool,
    /// Column rules, tried in order.
    #[serde(default)]
    pub columns: Vec<ColumnRuleConfig>,
    /// Custom regex detectors.
    #[serde(default)]
    pub custom: Vec<CustomDetectorConfig>,
    /// Where this configuration came from (file path), for error messages.
    #[serde(skip)]
    pub origin: String,
    /// Source text, to turn spans into line:col when [`crate::Masker::new`] reports an error.
    #[serde(skip)]
    pub(crate) source: Option<std::sync::Arc<str>>,
}

impl Default for MaskConfig {
    /// PAN + SSN + IBAN with their default strategies, email off, built-in column rules on.
    fn default() -> Self {
        MaskConfig {
            detectors: default_detectors(),
            default_strategy: None,
            strategies: BTreeMap::new(),
            builtin_column_rules: true,
            columns: Vec::new(),
            custom: Vec::new(),
            origin: "<default>".to_owned(),
            source: None,
        }
    }
}

/// Built-in column rules `(column glob, strategy)`: card numbers keep their last 4; card verification
/// codes, PIN blocks and track data (sensitive authentication data) are fully redacted — no content
/// detector can recognise a 3-digit CVV.
pub const BUILTIN_COLUMN_RULES: &[(&str, Strategy)] = &[
    ("*card_number*", Strategy::Last4),
    ("*cardnumber*", Strategy::Last4),
    ("*card_num*", Strategy::Last4),
    ("*card_no*", Strategy::Last4),
    ("*credit_card*", Strategy::Last4),
    ("*creditcard*", Strategy::Last4),
    ("*cc_number*", Strategy::Last4),
    ("*ccnum*", Strategy::Last4),
    ("*primary_account_number*", Strategy::Last4),
    ("pan", Strategy::Last4),
    ("*_pan", Strategy::Last4),
    ("pan_*", Strategy::Last4),
    ("*cvv*", Strategy::Redact),
    ("*cvc*", Strategy::Redact),
    ("cid", Strategy::Redact),
    ("csc", Strategy::Redact),
    ("*security_code*", Strategy::Redact),
    ("*card_verification*", Strategy::Redact),
    ("pin", Strategy::Redact),
    ("*pin_block*", Strategy::Redact),
    ("*pinblock*", Strategy::Redact),
    ("*track1*", Strategy::Redact),
    ("*track2*", Strategy::Redact),
    ("*track_data*", Strategy::Redact),
    ("*magstripe*", Strategy::Redact),
    ("*mag_stripe*", Strategy::Redact),
];

/// Built-in column rules as a list (for documentation and tests).
pub fn builtin_column_rules() -> &'static [(&'static str, Strategy)] {
    BUILTIN_COLUMN_RULES
}

/// A configuration error, printed as `origin:line:col: reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// File path (or other origin) of the policy.
    pub origin: String,
    /// 1-based line and column (in characters) when known.
    pub location: Option<(usize, usize)>,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// 1-based (line, column in characters) of byte offset `at` in `src`.
fn line_col(src: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(src.len());
    while !src.is_char_boundary(at) {
        at -= 1;
    }
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Whole policy document: only `masking` is read, other top-level keys are ignored.
#[derive(Deserialize)]
struct PolicyDoc {
    #[serde(default)]
    masking: Option<MaskConfig>,
}

impl MaskConfig {
    /// Parse the `[masking]` table of a whole policy TOML document and validate it (globs, custom
    /// regexes, names). A document without `[masking]` yields [`MaskConfig::default`].
    ///
    /// # Errors
    /// [`ConfigError`] with `origin:line:col` for invalid TOML, unknown keys or strategy names inside
    /// `[masking]`, empty globs, duplicate or reserved custom names, and regexes that do not compile,
    /// are too large or match the empty string.
    pub fn from_policy_toml(src: &str, origin: &str) -> Result<MaskConfig, ConfigError> {
        let doc: PolicyDoc = toml::from_str(src).map_err(|e| ConfigError {
            origin: origin.to_owned(),
            location: e.span().map(|s| line_col(src, s.start)),
            message: e.message().trim_end().to_owned(),
        })?;
        let mut cfg = doc.masking.unwrap_or_default();
        cfg.origin = origin.to_owned();
        cfg.source = Some(src.into());
        cfg.validate()?;
        Ok(cfg)
    }

    /// An error located at `span` of the source, if the source is known.
    pub(crate) fn error_at(&self, span: std::ops::Range<usize>, message: String) -> ConfigError {
        ConfigError {
            origin: self.origin.clone(),
            location: self.source.as_deref().map(|s| line_col(s, span.start)),
            message,
        }
    }

    /// Check everything [`crate::Masker::new`] would reject, with locations.
    ///
    /// # Errors
    /// See [`MaskConfig::from_policy_toml`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        for rule in &self.columns {
            if rule.column.get_ref().trim().is_empty() {
                return Err(self.error_at(
                    rule.column.span(),
                    "masking.columns: `column` must not be empty (use \"*\" for every column)"
                        .into(),
                ));
            }
            if let Some(t) = &rule.table {
                if t.get_ref().trim().is_empty() {
                    return Err(self.error_at(
                        t.span(),
                        "masking.columns: `table` must not be empty (omit it or use \"*\")".into(),
                    ));
                }
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for c in &self.custom {
            let name = c.name.get_ref().as_str();
            if name.trim().is_empty() {
                return Err(self.error_at(c.name.span(), "masking.custom: empty `name`".into()));
            }
            if ["pan", "ssn", "iban", "email"].contains(&name) {
                return Err(self.error_at(
                    c.name.span(),
                    format!("masking.custom: `{name}` is a built-in detector; list it in `masking.detectors` instead"),
                ));
            }
            if names.contains(&name) {
                return Err(self.error_at(
                    c.name.span(),
                    format!("masking.custom: duplicate detector name `{name}`"),
                ));
            }
            names.push(name);
            compile_custom(c).map_err(|m| self.error_at(c.regex.span(), m))?;
        }
        Ok(())
    }
}

/// Compile a custom detector's regex.
pub(crate) fn compile_custom(c: &CustomDetectorConfig) -> Result<regex::bytes::Regex, String> {
    let name = c.name.get_ref();
    let re = regex::bytes::RegexBuilder::new(c.regex.get_ref())
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("masking.custom `{name}`: invalid regex: {e}"))?;
    if re.is_match(b"") {
        return Err(format!(
            "masking.custom `{name}`: regex matches the empty string; it must match at least one character"
        ));
    }
    Ok(re)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("äb\ncd", 2), (1, 2));
    }

    #[test]
    fn error_display() {
        let e = ConfigError {
            origin: "p.toml".into(),
            location: Some((3, 7)),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "p.toml:3:7: bad");
    }
}
