//! Policy files: TOML → compiled, immutable [`Policy`].
//!
//! All validation (unknown keys, bad actions, bad kinds, bad globs, bad
//! durations, rule consistency) happens *inside* deserialization, so every
//! error carries the span of the offending value as reported by the `toml`
//! crate, and [`PolicyError`] prints it as `origin:line:column: reason`.
//! The top-level `masking` table belongs to the masking crate: it is kept as
//! a raw `toml::Value` and not validated here.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::kind::KindSet;
use crate::pattern::{GlobList, NameList};
use crate::{Protocol, DEFAULT_APPROVAL_TIMEOUT};

/// Error loading or compiling a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// An error with a known location (TOML syntax or a semantic problem).
    #[error("{origin}:{line}:{column}: {message}")]
    At {
        /// File path or other origin label.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (characters).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// An error without a location.
    #[error("{origin}: {message}")]
    Invalid {
        /// File path or other origin label.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The policy file could not be read.
    #[error("{origin}: cannot read policy file")]
    Io {
        /// File path.
        origin: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl PolicyError {
    /// `(line, column)` of the error, when known.
    #[must_use]
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            PolicyError::At { line, column, .. } => Some((*line, *column)),
            _ => None,
        }
    }

    /// Converts a `toml` error. Line and column come from the `toml` crate
    /// itself (the first line of its `Display`, which it computes from the
    /// error span in characters); this crate never counts lines.
    fn from_toml(origin: &str, e: &toml::de::Error) -> PolicyError {
        let message = e.message().trim().to_owned();
        let shown = e.to_string();
        let loc = shown
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("TOML parse error at line "))
            .and_then(|rest| {
                let (line, col) = rest.split_once(", column ")?;
                Some((line.trim().parse().ok()?, col.trim().parse().ok()?))
            });
        match loc {
            Some((line, column)) => PolicyError::At {
                origin: origin.to_owned(),
                line,
                column,
                message,
            },
            None => PolicyError::Invalid {
                origin: origin.to_owned(),
                message,
            },
        }
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Let the statement through.
    Allow,
    /// Refuse it with the rule's message.
    Deny,
    /// Hold it until a human approves, at most `timeout` (then deny).
    RequireApproval {
        /// How long the daemon waits for a decision.
        timeout: Duration,
    },
    /// Add the rule's tags and go on to the next rule (not terminal).
    Tag,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawAction {
    Allow,
    Deny,
    RequireApproval,
    Tag,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawTerminalAction {
    Allow,
    Deny,
    RequireApproval,
}

/// A duration written as seconds (integer) or `"90s"`, `"5m"`, `"1h"`.
#[derive(Debug, Clone, Copy)]
struct Timeout(Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(i64),
            Text(String),
        }
        let secs: i64 = match Raw::deserialize(d)? {
            Raw::Secs(s) => s,
            Raw::Text(t) => {
                let t = t.trim();
                let (num, mult) = match t.char_indices().last() {
                    Some((i, 's')) => (&t[..i], 1),
                    Some((i, 'm')) => (&t[..i], 60),
                    Some((i, 'h')) => (&t[..i], 3600),
                    _ => (t, 1),
                };
                num.trim()
                    .parse::<i64>()
                    .ok()
                    .and_then(|n| n.checked_mul(mult))
                    .ok_or_else(|| {
                        de::Error::custom(format!(
                            "invalid duration {t:?}: use seconds or a number with s, m or h (\"5m\")"
                        ))
                    })?
            }
        };
        if !(1..=86_400).contains(&secs) {
            return Err(de::Error::custom(
                "duration must be between 1 second and 24 hours",
            ));
        }
        Ok(Timeout(Duration::from_secs(secs.unsigned_abs())))
    }
}

/// A list of kind or group names. Errors point at the list (the `toml`
/// crate reports list spans, not element spans) and name the element.
struct KindList(KindSet);

impl<'de> Deserialize<'de> for KindList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        let mut set = KindSet::EMPTY;
        for (i, s) in v.iter().enumerate() {
            let k = KindSet::from_name(s).ok_or_else(|| {
                de::Error::custom(format!(
                    "unknown statement kind {s:?} (element {} of the list; see docs/policies.md for kinds and groups)",
                    i + 1
                ))
            })?;
            for one in k.iter() {
                set.insert(one);
            }
        }
        Ok(KindList(set))
    }
}

/// A list of SQL object-name globs, validated while deserializing.
struct NamePats(NameList);

impl<'de> Deserialize<'de> for NamePats {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        NameList::new(&v).map(NamePats).map_err(de::Error::custom)
    }
}

/// A list of string globs, validated while deserializing.
struct Globs(Vec<String>);

impl<'de> Deserialize<'de> for Globs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        GlobList::new(&v, false).map_err(de::Error::custom)?;
        Ok(Globs(v))
    }
}

/// One string glob (label values), validated while deserializing.
struct OneGlob(String);

impl<'de> Deserialize<'de> for OneGlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GlobList::new(std::slice::from_ref(&s), false).map_err(de::Error::custom)?;
        Ok(OneGlob(s))
    }
}

fn globs<E: de::Error>(v: Option<Globs>, ci: bool) -> Result<Option<GlobList>, E> {
    v.map(|v| GlobList::new(&v.0, ci).map_err(E::custom))
        .transpose()
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawProtocol {
    Postgres,
    Mysql,
}

/// Identity selectors: who runs the statement (from the kernel, never from
/// the client).
#[derive(Debug, Default)]
pub(crate) struct IdentitySel {
    pub cgroup: Option<GlobList>,
    pub uid: Option<Vec<u32>>,
    pub gid: Option<Vec<u32>>,
    pub user: Option<GlobList>,
    pub exe: Option<GlobList>,
    pub comm: Option<GlobList>,
    pub privileged: Option<bool>,
    pub labels: Vec<(String, GlobList)>,
}

/// Target selectors: where the statement goes.
#[derive(Debug, Default)]
pub(crate) struct TargetSel {
    pub address: Option<GlobList>,
    pub protocol: Option<Vec<Protocol>>,
    pub database: Option<GlobList>,
    pub user: Option<GlobList>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    cgroup: Option<Globs>,
    uid: Option<Vec<u32>>,
    gid: Option<Vec<u32>>,
    user: Option<Globs>,
    exe: Option<Globs>,
    comm: Option<Globs>,
    privileged: Option<bool>,
    labels: Option<BTreeMap<String, OneGlob>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    address: Option<Globs>,
    protocol: Option<Vec<RawProtocol>>,
    database: Option<Globs>,
    user: Option<Globs>,
}

/// A compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub name: String,
    pub action: RuleAction,
    pub message: Option<String>,
    pub tags: Vec<String>,
    pub kinds: Option<KindSet>,
    pub tables: Option<NameList>,
    pub tables_read: Option<NameList>,
    pub tables_written: Option<NameList>,
    pub columns: Option<GlobList>,
    pub functions: Option<NameList>,
    pub settings: Option<GlobList>,
    pub languages: Option<GlobList>,
    pub where_less: Option<bool>,
    pub no_limit: Option<bool>,
    pub limit_over: Option<u64>,
    pub identity: IdentitySel,
    pub target: TargetSel,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default)]
    description: Option<String>,
    action: RawAction,
    message: Option<String>,
    timeout: Option<Timeout>,
    #[serde(default)]
    tags: Vec<String>,
    kind: Option<KindList>,
    tables: Option<NamePats>,
    tables_read: Option<NamePats>,
    tables_written: Option<NamePats>,
    columns: Option<Globs>,
    functions: Option<NamePats>,
    settings: Option<Globs>,
    languages: Option<Globs>,
    where_less: Option<bool>,
    no_limit: Option<bool>,
    limit_over: Option<u64>,
    identity: Option<RawIdentity>,
    target: Option<RawTarget>,
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RawRule::deserialize(d)?;
        let _ = r.description;
        if r.name.trim().is_empty() || r.name.chars().any(|c| c.is_control() || c == '"') {
            return Err(de::Error::custom(
                "rule name must be non-empty and contain no quotes or control characters",
            ));
        }
        let action = match (r.action, r.timeout) {
            (RawAction::RequireApproval, t) => RuleAction::RequireApproval {
                timeout: t.map_or(DEFAULT_APPROVAL_TIMEOUT, |t| t.0),
            },
            (_, Some(_)) => {
                return Err(de::Error::custom(format!(
                    "rule {:?}: `timeout` is only valid with action = \"require_approval\"",
                    r.name
                )))
            }
            (RawAction::Allow, None) => RuleAction::Allow,
            (RawAction::Deny, None) => RuleAction::Deny,
            (RawAction::Tag, None) => RuleAction::Tag,
        };
        if action == RuleAction::Tag && r.tags.is_empty() {
            return Err(de::Error::custom(format!(
                "rule {:?}: action = \"tag\" needs a non-empty `tags` list",
                r.name
            )));
        }
        let kinds = r.kind.map(|k| k.0);
        let identity = match r.identity {
            None => IdentitySel::default(),
            Some(i) => IdentitySel {
                cgroup: globs(i.cgroup, false)?,
                uid: i.uid,
                gid: i.gid,
                user: globs(i.user, false)?,
                exe: globs(i.exe, false)?,
                comm: globs(i.comm, false)?,
                privileged: i.privileged,
                labels: i
                    .labels
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, g)| Ok((k, GlobList::new(&[g.0], false).map_err(de::Error::custom)?)))
                    .collect::<Result<Vec<_>, D::Error>>()?,
            },
        };
        let target = match r.target {
            None => TargetSel::default(),
            Some(t) => TargetSel {
                address: globs(t.address, true)?,
                protocol: t.protocol.map(|v| {
                    v.into_iter()
                        .map(|p| match p {
                            RawProtocol::Postgres => Protocol::Postgres,
                            RawProtocol::Mysql => Protocol::Mysql,
                        })
                        .collect()
                }),
                database: globs(t.database, false)?,
                user: globs(t.user, false)?,
            },
        };
        Ok(Rule {
            name: r.name,
            action,
            message: r.message,
            tags: r.tags,
            kinds,
            tables: r.tables.map(|n| n.0),
            tables_read: r.tables_read.map(|n| n.0),
            tables_written: r.tables_written.map(|n| n.0),
            columns: globs(r.columns, true)?,
            functions: r.functions.map(|n| n.0),
            settings: globs(r.settings, true)?,
            languages: globs(r.languages, true)?,
            where_less: r.where_less,
            no_limit: r.no_limit,
            limit_over: r.limit_over,
            identity,
            target,
        })
    }
}

/// The list of rules; rule names must be unique (checked where the
/// duplicate is written).
struct Rules(Vec<Rule>);

impl<'de> Deserialize<'de> for Rules {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Rules;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of [[rule]] tables")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Rules, A::Error> {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                while let Some(r) = seq.next_element::<Rule>()? {
                    if !seen.insert(r.name.clone()) {
                        return Err(de::Error::custom(format!(
                            "duplicate rule name {:?} (rule {}): rule names must be unique",
                            r.name,
                            out.len() + 1
                        )));
                    }
                    out.push(r);
                }
                Ok(Rules(out))
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    description: Option<String>,
    default: RawTerminalAction,
    #[serde(default)]
    default_message: Option<String>,
    #[serde(default)]
    on_parse_error: Option<RawTerminalAction>,
    #[serde(default)]
    approval_timeout: Option<Timeout>,
    /// Extra functions whose argument is a query string the server runs
    /// (`"name"` = first argument, `"schema.name:N"` = N-th argument).
    #[serde(default)]
    sql_functions: Option<Vec<String>>,
    /// Client encodings whose characters can end in a quote or backslash byte that this
    /// policy allows anyway (dbwarden then decodes statements before judging them).
    #[serde(default)]
    client_encodings: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    policy: RawHeader,
    #[serde(default)]
    rule: Option<Rules>,
    #[serde(default)]
    masking: Option<toml::Value>,
}

/// A compiled policy: immutable, `Send + Sync`, cheap to share in an `Arc`.
#[derive(Debug)]
pub struct Policy {
    pub(crate) name: String,
    pub(crate) version: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) hash: String,
    pub(crate) origin: String,
    pub(crate) default: RuleAction,
    pub(crate) default_message: Option<String>,
    pub(crate) on_parse_error: RuleAction,
    pub(crate) rules: Vec<Rule>,
    pub(crate) masking: Option<toml::Value>,
    /// `[policy] sql_functions`: (lower-cased name parts, 0-based argument).
    pub(crate) sql_functions: Vec<(Vec<String>, usize)>,
    /// `[policy] client_encodings`: the unsafe encoding families allowed.
    pub(crate) client_encodings: Vec<&'static str>,
}

/// Source text of the embedded default policy (`policies/pci-dss.toml`).
pub const EMBEDDED_DEFAULT_SRC: &str = include_str!("../../../policies/pci-dss.toml");

fn terminal(a: RawTerminalAction, timeout: Duration) -> RuleAction {
    match a {
        RawTerminalAction::Allow => RuleAction::Allow,
        RawTerminalAction::Deny => RuleAction::Deny,
        RawTerminalAction::RequireApproval => RuleAction::RequireApproval { timeout },
    }
}

impl Policy {
    /// Parses and compiles a policy from TOML source. `origin` (usually the
    /// file path) prefixes error messages.
    ///
    /// # Errors
    /// [`PolicyError::At`] with the line and column of the offending value for
    /// TOML syntax errors, unknown keys, unknown kinds or actions, invalid
    /// globs or durations and duplicate rule names.
    pub fn parse(src: &str, origin: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(src).map_err(|e| PolicyError::from_toml(origin, &e))?;
        let h = raw.policy;
        if h.name.trim().is_empty() {
            return Err(PolicyError::Invalid {
                origin: origin.to_owned(),
                message: "[policy] name must not be empty".to_owned(),
            });
        }
        let timeout = h.approval_timeout.map_or(DEFAULT_APPROVAL_TIMEOUT, |t| t.0);
        let mut sql_functions = Vec::new();
        for f in h.sql_functions.unwrap_or_default() {
            let (name, arg) = match f.rsplit_once(':') {
                Some((n, a)) => match a.parse::<usize>() {
                    Ok(i) if i >= 1 => (n, i - 1),
                    _ => {
                        return Err(PolicyError::Invalid {
                            origin: origin.to_owned(),
                            message: format!(
                                "[policy] sql_functions: {f:?}: the argument number after ':' must be 1 or more"
                            ),
                        })
                    }
                },
                None => (f.as_str(), 0),
            };
            let parts: Vec<String> = name.split('.').map(|p| p.trim().to_lowercase()).collect();
            if parts.is_empty() || parts.len() > 3 || parts.iter().any(String::is_empty) {
                return Err(PolicyError::Invalid {
                    origin: origin.to_owned(),
                    message: format!("[policy] sql_functions: invalid function name {f:?}"),
                });
            }
            sql_functions.push((parts, arg));
        }
        let mut client_encodings = Vec::new();
        for e in h.client_encodings.unwrap_or_default() {
            let invalid = |why: &str| PolicyError::Invalid {
                origin: origin.to_owned(),
                message: format!("[policy] client_encodings: {e:?} {why}"),
            };
            match crate::encoding::family(&e) {
                None => return Err(invalid("is not an encoding that needs allowing (only SJIS, BIG5, GBK, GB18030 and UHC do)")),
                Some(_) if !crate::encoding::decodable(&e) => {
                    return Err(invalid("cannot be read by dbwarden, so it cannot be allowed"))
                }
                Some(f) => client_encodings.push(f),
            }
        }
        let mut rules = raw.rule.map(|r| r.0).unwrap_or_default();
        // Rules without their own timeout take the policy-wide one.
        if h.approval_timeout.is_some() {
            for r in &mut rules {
                if let RuleAction::RequireApproval { timeout: t } = &mut r.action {
                    if *t == DEFAULT_APPROVAL_TIMEOUT {
                        *t = timeout;
                    }
                }
            }
        }
        let digest = Sha256::digest(src.as_bytes());
        let hash = digest.iter().fold(String::with_capacity(64), |mut s, b| {
            use fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        });
        Ok(Policy {
            name: h.name,
            version: h.version,
            description: h.description,
            hash,
            origin: origin.to_owned(),
            default: terminal(h.default, timeout),
            default_message: h.default_message,
            on_parse_error: terminal(h.on_parse_error.unwrap_or(RawTerminalAction::Deny), timeout),
            rules,
            masking: raw.masking,
            sql_functions,
            client_encodings,
        })
    }

    /// Whether a session may use the client encoding `name`: any encoding dbwarden reads
    /// like the server, and those whose characters can end in a quote or backslash byte only
    /// when `[policy] client_encodings` allows them.
    #[must_use]
    pub fn allows_client_encoding(&self, name: &str) -> bool {
        match crate::encoding::family(name) {
            None => true,
            Some(f) => self.client_encodings.contains(&f),
        }
    }

    /// The embedded default policy (`policies/pci-dss.toml`, compiled in).
    ///
    /// # Panics
    /// Never in a released build: the embedded file is parsed by the unit
    /// tests, so a broken default fails the build's tests.
    #[must_use]
    pub fn embedded_default() -> Policy {
        match Policy::parse(EMBEDDED_DEFAULT_SRC, "<embedded>/policies/pci-dss.toml") {
            Ok(p) => p,
            Err(e) => panic!("embedded default policy is invalid: {e}"),
        }
    }

    /// Reads and compiles a policy file.
    ///
    /// # Errors
    /// [`PolicyError::Io`] if the file cannot be read, otherwise as [`Policy::parse`].
    pub fn from_file(path: &std::path::Path) -> Result<Policy, PolicyError> {
        let origin = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            origin: origin.clone(),
            source,
        })?;
        Policy::parse(&src, &origin)
    }

    /// SHA-256 of the policy source text, lower-case hex.
    #[must_use]
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The `[policy] name`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `[policy] version`, if given.
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The `[policy] description`, if given.
    #[must_use]
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Where the policy came from (the `origin` given to [`Policy::parse`]).
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The raw `[masking]` table, for the masking crate (not validated here).
    #[must_use]
    pub fn masking(&self) -> Option<&toml::Value> {
        self.masking.as_ref()
    }

    /// Names of the rules, in evaluation order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[policy]\nname = \"t\"\ndefault = \"allow\"\n";
    const MIN_SHA256: &str = "7b4617e34fa1b72225e64fe105a520e3d12b3dbbc5b2568f3712f7bd3b639bb4";

    fn err(src: &str) -> PolicyError {
        Policy::parse(src, "p.toml").expect_err("policy must be rejected")
    }

    #[test]
    fn minimal_and_hash() {
        let p = Policy::parse(MIN, "p.toml").unwrap();
        assert_eq!(p.name(), "t");
        assert_eq!(p.hash().len(), 64);
        // `printf '[policy]\nname = "t"\ndefault = "allow"\n' | sha256sum`
        assert_eq!(p.hash(), MIN_SHA256);
        let q = Policy::parse(&format!("{MIN}# x\n"), "p.toml").unwrap();
        assert_ne!(p.hash(), q.hash());
        assert_eq!(p.on_parse_error, RuleAction::Deny);
    }

    #[test]
    fn embedded_default_parses() {
        let p = Policy::embedded_default();
        assert_eq!(p.name(), "pci-dss");
        assert!(p.rules.len() > 10);
    }

    #[test]
    fn syntax_error_location() {
        let e = err("[policy]\nname = \"t\"\ndefault = allow\n");
        assert_eq!(e.location(), Some((3, 11)), "{e}");
        assert!(e.to_string().starts_with("p.toml:3:11: "), "{e}");
    }

    #[test]
    fn unknown_key_location() {
        let e = err(&format!(
            "{MIN}\n[[rule]]\nname = \"a\"\naction = \"deny\"\nkinds = [\"drop\"]\n"
        ));
        assert_eq!(e.location(), Some((8, 1)), "{e}");
        assert!(e.to_string().contains("unknown field `kinds`"), "{e}");
    }

    #[test]
    fn bad_action_location() {
        let e = err(&format!(
            "{MIN}\n[[rule]]\nname = \"a\"\naction = \"block\"\n"
        ));
        assert_eq!(e.location(), Some((7, 10)), "{e}");
        assert!(e.to_string().contains("unknown variant `block`"), "{e}");
    }

    #[test]
    fn bad_kind_location() {
        let e = err(&format!(
            "{MIN}\n[[rule]]\nname = \"a\"\naction = \"deny\"\nkind = [\"select\", \"dorp\"]\n"
        ));
        // The toml crate locates list elements at the list.
        assert_eq!(e.location(), Some((8, 8)), "{e}");
        assert!(
            e.to_string()
                .contains("unknown statement kind \"dorp\" (element 2"),
            "{e}"
        );
    }

    #[test]
    fn bad_glob_location() {
        let e = err(&format!(
            "{MIN}\n[[rule]]\nname = \"a\"\naction = \"deny\"\ntables = [\"ok\", \"bad[\"]\n"
        ));
        assert_eq!(e.location(), Some((8, 10)), "{e}");
        assert!(e.to_string().contains("invalid glob \"bad[\""), "{e}");
        let e = err(&format!(
            "{MIN}\n[[rule]]\nname = \"a\"\naction = \"deny\"\n[rule.identity]\nlabels = {{ job = \"x{{\" }}\n"
        ));
        assert_eq!(e.location(), Some((9, 18)), "{e}");
    }

    #[test]
    fn semantic_errors() {
        let e = err(&format!(
            "{MIN}\n[[rule]]\nname = \"a\"\naction = \"deny\"\ntimeout = \"5m\"\n"
        ));
        assert!(e.to_string().contains("only valid with action"), "{e}");
        assert!(e.location().is_some());
        let e = err(&format!(
            "{MIN}\n[[rule]]\nname = \"a\"\naction = \"allow\"\n\n[[rule]]\nname = \"a\"\naction = \"deny\"\n"
        ));
        assert!(e.to_string().contains("duplicate rule name"), "{e}");
        let e = err(&format!(
            "{MIN}\n[[rule]]\nname = \"a\"\naction = \"require_approval\"\ntimeout = \"5x\"\n"
        ));
        assert!(e.to_string().contains("invalid duration"), "{e}");
        assert_eq!(e.location().map(|l| l.0), Some(8));
        let e = err("[policy]\nname = \"t\"\n");
        assert!(e.to_string().contains("missing field `default`"), "{e}");
    }

    #[test]
    fn masking_is_kept_not_validated() {
        let p = Policy::parse(
            &format!("{MIN}\n[masking]\nanything = {{ goes = [1, \"x\"] }}\n"),
            "p.toml",
        )
        .unwrap();
        assert!(p.masking().unwrap().get("anything").is_some());
    }

    #[test]
    fn timeouts() {
        let p = Policy::parse(
            &format!("{MIN}approval_timeout = 60\n\n[[rule]]\nname = \"a\"\naction = \"require_approval\"\n\n[[rule]]\nname = \"b\"\naction = \"require_approval\"\ntimeout = \"2h\"\n"),
            "p.toml",
        )
        .unwrap();
        assert_eq!(
            p.rules[0].action,
            RuleAction::RequireApproval {
                timeout: Duration::from_secs(60)
            }
        );
        assert_eq!(
            p.rules[1].action,
            RuleAction::RequireApproval {
                timeout: Duration::from_secs(7200)
            }
        );
    }
}
