//! Cardholder-data detection and masking for dbwarden.
//!
//! Everything a database returns to an agent, and every statement text that reaches logs or session
//! files, passes through a [`Masker`]. The crate is pure (no I/O, no async): callers hand it bytes and
//! get masked bytes or an error back, and an error means *fail the statement*, never "pass through".
//!
//! # Layout (data flow)
//!
//! 1. [`config`] — the `[masking]` table of the policy file: detectors, strategies, column rules,
//!    custom regex detectors. Errors are `origin:line:col: reason`.
//! 2. `scan` — the hot path. 64-byte chunks are classified by SSE2/AVX2/AVX-512BW (runtime-detected,
//!    all `unsafe` lives in `scan::x86`) or a portable table, into digit / separator / dash /
//!    uppercase / `@` bitmasks; long digit stretches, exact `ddd-dd-dddd` SSN shapes, IBAN starts and
//!    `@` are found with integer bit tricks, so validators run only on real candidates.
//! 3. `detect` — validators run only on those candidates: PAN (13–19 digits, IIN, Luhn, digit-run
//!    boundaries), SSN, IBAN (mod-97), email. Custom detectors use `regex` (never for built-ins).
//! 4. [`Strategy`] — redact / last4 / keyed hash (HMAC-SHA-256) / null, in a text or digits-only
//!    alphabet so masked values still decode.
//! 5. [`Masker`] — findings and text masking ([`Masker::mask_bytes`], [`Masker::mask_str`]) and
//!    column rules ([`Masker::column_rule`]).
//! 6. [`pg`] — PostgreSQL type awareness: text and binary formats of integers, numeric, floats,
//!    text types, bytea, json/jsonb and arrays, plus COPY data.
//!
//! # Example
//! ```
//! use dbwarden_mask::{MaskConfig, Masker};
//! let cfg = MaskConfig::from_policy_toml("[masking]\ndetectors = [\"pan\"]\n", "policy.toml")?;
//! let m = Masker::new(&cfg, [7; 32])?;
//! assert_eq!(m.mask_str("card 4111 1111 1111 1111 ok"), "card **** **** **** 1111 ok");
//! # Ok::<(), dbwarden_mask::ConfigError>(())
//! ```

pub mod config;
mod detect;
mod exempt;
mod glob;
pub mod pg;
mod scan;
mod strategy;

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

pub use config::{ConfigError, Detector, MaskConfig};
pub use strategy::Strategy;

use glob::Glob;
use scan::{Event, Isa, Want};
use strategy::{Keyed, Mode};

/// Errors of the masking data path. Messages never contain the data being masked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    /// A value of this type cannot be masked with the requested strategy without breaking its encoding.
    #[error("cannot apply {strategy:?} to a {format} value of type oid {type_oid}")]
    Unsupported {
        /// PostgreSQL type OID.
        type_oid: u32,
        /// `"text"` or `"binary"`.
        format: &'static str,
        /// The strategy that could not be applied.
        strategy: Strategy,
    },
    /// The value does not decode as its declared type (truncated, bad header, bad digits...).
    #[error("malformed {what} value: {reason}")]
    Malformed {
        /// Type or structure being decoded.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// Sensitive data was found but could not be masked in place (the mask would change the length of
    /// a value whose length is fixed).
    #[error(
        "sensitive data found in a type oid {type_oid} value that cannot be rewritten in place"
    )]
    CannotRewrite {
        /// PostgreSQL type OID.
        type_oid: u32,
    },
    /// The data cannot be inspected at all in this form (e.g. binary COPY).
    #[error("{0}")]
    Uninspectable(&'static str),
}

/// What a finding is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FindingKind {
    /// Payment card number.
    Pan,
    /// US social security number.
    Ssn,
    /// International bank account number.
    Iban,
    /// Email address.
    Email,
    /// A custom regex detector, by its configured name.
    Custom(Arc<str>),
}

/// One sensitive span of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Byte range in the input.
    pub range: Range<usize>,
    /// Detector that produced it (the first one, when overlapping findings were merged).
    pub kind: FindingKind,
    /// Strategy that will mask it (the strongest one, when overlapping findings were merged).
    pub strategy: Strategy,
}

/// A compiled custom detector.
#[derive(Debug)]
struct Custom {
    name: Arc<str>,
    re: regex::bytes::Regex,
    strategy: Strategy,
}

/// A compiled column rule.
#[derive(Debug)]
struct ColumnRule {
    column: Glob,
    table: Option<Glob>,
    strategy: Strategy,
}

/// Compiled masking configuration: `Send + Sync`, share it through an `Arc`.
pub struct Masker {
    isa: Isa,
    want: Want,
    pan: bool,
    ssn: bool,
    iban: bool,
    email: bool,
    /// Indexed by `Detector as usize`.
    strategies: [Strategy; 4],
    custom: Vec<Custom>,
    columns: Vec<ColumnRule>,
    key: Keyed,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("isa", &self.isa)
            .field("pan", &self.pan)
            .field("ssn", &self.ssn)
            .field("iban", &self.iban)
            .field("email", &self.email)
            .field("strategies", &self.strategies)
            .field("custom", &self.custom.len())
            .field("columns", &self.columns.len())
            .finish_non_exhaustive()
    }
}

const DETECTORS: [Detector; 4] = [
    Detector::Pan,
    Detector::Ssn,
    Detector::Iban,
    Detector::Email,
];

impl Masker {
    /// Compile `cfg`. `hmac_key` is the host secret for the keyed-hash strategy.
    ///
    /// # Errors
    /// [`ConfigError`] if the configuration is invalid (see [`MaskConfig::validate`]).
    pub fn new(cfg: &MaskConfig, hmac_key: [u8; 32]) -> Result<Masker, ConfigError> {
        cfg.validate()?;
        let on = |d: Detector| cfg.detectors.contains(&d);
        let strategies = DETECTORS.map(|d| {
            cfg.strategies
                .get(&d)
                .copied()
                .or(cfg.default_strategy)
                .unwrap_or(d.default_strategy())
        });
        let mut custom = Vec::with_capacity(cfg.custom.len());
        for c in &cfg.custom {
            let re = config::compile_custom(c).map_err(|m| cfg.error_at(c.regex.span(), m))?;
            custom.push(Custom {
                name: Arc::from(c.name.get_ref().as_str()),
                re,
                strategy: c.strategy,
            });
        }
        let mut columns: Vec<ColumnRule> = cfg
            .columns
            .iter()
            .map(|r| ColumnRule {
                column: Glob::new(r.column.get_ref()),
                table: r.table.as_ref().map(|t| Glob::new(t.get_ref())),
                strategy: r.strategy,
            })
            .collect();
        if cfg.builtin_column_rules {
            columns.extend(
                config::BUILTIN_COLUMN_RULES
                    .iter()
                    .map(|&(g, strategy)| ColumnRule {
                        column: Glob::new(g),
                        table: None,
                        strategy,
                    }),
            );
        }
        let (pan, ssn) = (on(Detector::Pan), on(Detector::Ssn));
        let want = Want {
            min_stretch: if pan { detect::PAN_MIN } else { 0 },
            min_digits: detect::PAN_MIN as u32,
            ssn,
            iban: on(Detector::Iban),
            at: on(Detector::Email),
        };
        Ok(Masker {
            isa: Isa::detect(),
            want,
            pan,
            ssn,
            iban: want.iban,
            email: want.at,
            strategies,
            custom,
            columns,
            key: Keyed::new(&hmac_key),
        })
    }

    fn strategy(&self, d: Detector) -> Strategy {
        self.strategies[d as usize]
    }

    /// All sensitive spans of `input`, sorted and non-overlapping (overlaps are merged, keeping the
    /// strongest strategy).
    pub fn find(&self, input: &[u8]) -> Vec<Finding> {
        self.find_with(self.isa, input)
    }

    pub(crate) fn find_with(&self, isa: Isa, input: &[u8]) -> Vec<Finding> {
        let mut out: Vec<Finding> = Vec::new();
        let finding = |range, kind, d| Finding {
            range,
            kind,
            strategy: self.strategy(d),
        };
        isa.scan(input, self.want, &mut |ev| match ev {
            Event::Stretch(s, e) => {
                detect::check_pan(input, s, e, &mut |range| {
                    out.push(finding(range, FindingKind::Pan, Detector::Pan));
                });
            }
            Event::Ssn(p) => {
                if let Some(range) = detect::check_ssn_at(input, p) {
                    out.push(finding(range, FindingKind::Ssn, Detector::Ssn));
                }
            }
            Event::Iban(p) => {
                if let Some(range) = detect::check_iban(input, p) {
                    out.push(finding(range, FindingKind::Iban, Detector::Iban));
                }
            }
            Event::At(p) => {
                if let Some(range) = detect::check_email(input, p) {
                    out.push(finding(range, FindingKind::Email, Detector::Email));
                }
            }
        });
        for c in &self.custom {
            out.extend(c.re.find_iter(input).map(|m| Finding {
                range: m.range(),
                kind: FindingKind::Custom(c.name.clone()),
                strategy: c.strategy,
            }));
        }
        merge(out)
    }

    /// Whether any detector fires on `input`.
    pub fn contains_sensitive(&self, input: &[u8]) -> bool {
        !self.find(input).is_empty()
    }

    /// Mask every finding in `input` with the text alphabet (`*`). Length-preserving strategies keep
    /// the length; `hash` writes `hmac:`+hex fitted to the match when it is at least 13 bytes long, or
    /// 21 bytes otherwise. Returns the input unchanged (borrowed) when nothing was found.
    ///
    /// Allocates the result; a caller that masks many buffers should use [`Masker::mask_into`].
    pub fn mask_bytes<'a>(&self, input: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out = Vec::new();
        if self.mask_into(input, &mut out) {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(input)
        }
    }

    /// [`Masker::mask_bytes`] into a caller-owned buffer, so a connection can reuse one allocation
    /// for every buffer it masks.
    ///
    /// `out` is cleared first. Returns `true` when something was found: `out` then holds the whole
    /// masked copy of `input`. Returns `false` when nothing was found: `out` is left **empty** and
    /// `input` itself is the result (no copy is made).
    ///
    /// The result is identical to [`Masker::mask_bytes`]. Built-in detectors are masked while the
    /// scan runs (no list of findings is built); with custom regex detectors configured the findings
    /// are collected first.
    pub fn mask_into(&self, input: &[u8], out: &mut Vec<u8>) -> bool {
        self.mask_into_with(self.isa, input, out)
    }

    pub(crate) fn mask_into_with(&self, isa: Isa, input: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        if !self.custom.is_empty() {
            let findings = self.find(input);
            if findings.is_empty() {
                return false;
            }
            self.rewrite_into(input, &findings, |_| Mode::Text, out);
            return true;
        }
        let mut rw = Rewriter {
            m: self,
            input,
            out,
            at: 0,
            wrote: false,
            pending: Vec::new(),
            // An email's local part reaches up to 64 bytes before its `@`.
            back: if self.email {
                detect::EMAIL_LOCAL_MAX
            } else {
                0
            },
        };
        isa.scan(input, self.want, &mut rw);
        rw.finish()
    }

    /// [`Masker::mask_bytes`] for text: findings are widened to character boundaries so the result is
    /// valid UTF-8. For logs, statement text and session files.
    pub fn mask_str<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut findings = self.find(s.as_bytes());
        if findings.is_empty() {
            return Cow::Borrowed(s);
        }
        for f in &mut findings {
            while !s.is_char_boundary(f.range.start) {
                f.range.start -= 1;
            }
            while !s.is_char_boundary(f.range.end) {
                f.range.end += 1;
            }
        }
        let findings = merge(findings);
        let out = self.rewrite(s.as_bytes(), &findings, |_| Mode::Text);
        match String::from_utf8(out) {
            Ok(v) => Cow::Owned(v),
            // Unreachable by construction (whole characters are replaced by ASCII); stay safe anyway.
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }

    /// Copy `input` with each finding replaced; `mode` picks the alphabet per finding.
    pub(crate) fn rewrite(
        &self,
        input: &[u8],
        findings: &[Finding],
        mode: impl Fn(&Finding) -> Mode,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() + 8 * findings.len());
        self.rewrite_into(input, findings, mode, &mut out);
        out
    }

    /// [`Masker::rewrite`], appending to `out`.
    fn rewrite_into(
        &self,
        input: &[u8],
        findings: &[Finding],
        mode: impl Fn(&Finding) -> Mode,
        out: &mut Vec<u8>,
    ) {
        out.reserve(input.len() + 8 * findings.len());
        let mut at = 0;
        for f in findings {
            out.extend_from_slice(&input[at..f.range.start]);
            self.apply_text(f.strategy, mode(f), &input[f.range.clone()], out);
            at = f.range.end;
        }
        out.extend_from_slice(&input[at..]);
    }

    /// Append the masked form of one finding's bytes.
    #[inline]
    fn apply_text(&self, strategy: Strategy, mode: Mode, span: &[u8], out: &mut Vec<u8>) {
        let target = (span.len() >= 13).then_some(span.len());
        strategy::apply(strategy, mode, span, &self.key, target, out);
    }

    /// The keyed-hash state, for type-aware masking.
    pub(crate) fn key(&self) -> &Keyed {
        &self.key
    }

    /// Strategy of the first column rule matching `column` (and `table`, if the rule has a table glob).
    /// An unknown table (`None`) matches every table glob: a rule is never skipped for lack of context.
    pub fn column_rule(&self, table: Option<&str>, column: &str) -> Option<Strategy> {
        self.columns
            .iter()
            .find(|r| {
                r.column.matches(column)
                    && match (&r.table, table) {
                        (Some(g), Some(t)) => g.matches(t),
                        _ => true,
                    }
            })
            .map(|r| r.strategy)
    }
}

/// Streaming rewrite for [`Masker::mask_into`]: scanner events are validated as they arrive, and
/// findings are written out as soon as the scanner's progress marks prove that no later finding can
/// overlap them (the result equals `rewrite(find(..))`, overlaps merged the same way).
struct Rewriter<'a> {
    m: &'a Masker,
    input: &'a [u8],
    out: &'a mut Vec<u8>,
    /// Input before this offset has been written (copied or masked).
    at: usize,
    /// Whether anything has been written (the first finding starts the copy).
    wrote: bool,
    /// Findings not yet written, in arrival order (a handful at most: one chunk's worth plus a long
    /// stretch or email reaching past it).
    pending: Vec<(Range<usize>, Strategy)>,
    /// How far before an event's position its finding may start.
    back: usize,
}

impl Rewriter<'_> {
    #[inline]
    fn push(&mut self, range: Range<usize>, d: Detector) {
        self.pending.push((range, self.m.strategy(d)));
    }

    /// Sort and merge `pending` (same rule as [`merge`]), then write every merged finding that ends
    /// at or before `limit`.
    fn flush(&mut self, limit: usize) {
        let p = &mut self.pending;
        if p.len() > 1 {
            p.sort_unstable_by(|a, b| a.0.start.cmp(&b.0.start).then(b.0.end.cmp(&a.0.end)));
            let mut w = 0;
            for r in 1..p.len() {
                if p[r].0.start < p[w].0.end {
                    p[w].0.end = p[w].0.end.max(p[r].0.end);
                    if p[r].1.strength() > p[w].1.strength() {
                        p[w].1 = p[r].1;
                    }
                } else {
                    w += 1;
                    p[w] = p[r].clone();
                }
            }
            p.truncate(w + 1);
        }
        let done = p.iter().take_while(|f| f.0.end <= limit).count();
        if done == 0 {
            return;
        }
        if !self.wrote {
            self.wrote = true;
            // Masked text is rarely longer than the input (only `hash` on short spans grows it).
            self.out.reserve(self.input.len() + 64);
        }
        for (range, strategy) in self.pending.drain(..done) {
            self.out
                .extend_from_slice(&self.input[self.at..range.start]);
            self.m
                .apply_text(strategy, Mode::Text, &self.input[range.clone()], self.out);
            self.at = range.end;
        }
    }

    /// Write the remaining findings and the tail; whether anything was masked.
    fn finish(mut self) -> bool {
        if !self.pending.is_empty() {
            self.flush(usize::MAX);
        }
        if self.wrote {
            self.out.extend_from_slice(&self.input[self.at..]);
        }
        self.wrote
    }
}

impl scan::Sink for Rewriter<'_> {
    #[inline]
    fn event(&mut self, ev: Event) {
        let input = self.input;
        match ev {
            Event::Stretch(s, e) => {
                detect::check_pan(input, s, e, &mut |range| self.push(range, Detector::Pan));
            }
            Event::Ssn(p) => {
                if let Some(range) = detect::check_ssn_at(input, p) {
                    self.push(range, Detector::Ssn);
                }
            }
            Event::Iban(p) => {
                if let Some(range) = detect::check_iban(input, p) {
                    self.push(range, Detector::Iban);
                }
            }
            Event::At(p) => {
                if let Some(range) = detect::check_email(input, p) {
                    self.push(range, Detector::Email);
                }
            }
        }
    }

    #[inline]
    fn settled(&mut self, pos: usize) {
        if !self.pending.is_empty() {
            self.flush(pos.saturating_sub(self.back));
        }
    }
}

/// Sort findings and merge overlapping ones (the stronger strategy wins).
fn merge(mut v: Vec<Finding>) -> Vec<Finding> {
    if v.len() < 2 {
        return v;
    }
    let order = |a: &Finding, b: &Finding| {
        a.range
            .start
            .cmp(&b.range.start)
            .then(b.range.end.cmp(&a.range.end))
    };
    // Scanner output is almost always in order already.
    if !v.is_sorted_by(|a, b| order(a, b).is_le()) {
        v.sort_by(order);
    }
    let mut out: Vec<Finding> = Vec::with_capacity(v.len());
    for f in v {
        if let Some(last) = out.last_mut() {
            if f.range.start < last.range.end {
                last.range.end = last.range.end.max(f.range.end);
                if f.strategy.strength() > last.strategy.strength() {
                    last.strategy = f.strategy;
                }
                continue;
            }
        }
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(toml: &str) -> Masker {
        let cfg = MaskConfig::from_policy_toml(toml, "t.toml").expect("config");
        Masker::new(&cfg, [1; 32]).expect("masker")
    }

    /// The pre-SSN-shape algorithm: every stretch of at least 11 bytes (SSN) or 13 (PAN only) goes
    /// through the stretch validators; IBAN and email candidates come from the naive oracle.
    fn reference_find(m: &Masker, input: &[u8]) -> Vec<Finding> {
        let want = Want {
            min_stretch: if m.ssn {
                detect::SSN_LEN
            } else if m.pan {
                detect::PAN_MIN
            } else {
                0
            },
            min_digits: if m.ssn { 9 } else { detect::PAN_MIN as u32 },
            ssn: false,
            iban: m.iban,
            at: m.email,
        };
        let mut out = Vec::new();
        for ev in scan::tests::oracle(input, want) {
            let mut hits = Vec::new();
            let (range, kind, d) = match ev {
                Event::Stretch(s, e) => {
                    detect::check_stretch(input, s, e, m.pan, m.ssn, &mut hits);
                    for (range, hit) in hits {
                        let (kind, d) = match hit {
                            detect::StretchHit::Pan => (FindingKind::Pan, Detector::Pan),
                            detect::StretchHit::Ssn => (FindingKind::Ssn, Detector::Ssn),
                        };
                        out.push(Finding {
                            range,
                            kind,
                            strategy: m.strategy(d),
                        });
                    }
                    continue;
                }
                Event::Iban(p) => match detect::check_iban(input, p) {
                    Some(r) => (r, FindingKind::Iban, Detector::Iban),
                    None => continue,
                },
                Event::At(p) => match detect::check_email(input, p) {
                    Some(r) => (r, FindingKind::Email, Detector::Email),
                    None => continue,
                },
                Event::Ssn(_) => unreachable!("not requested"),
            };
            out.push(Finding {
                range,
                kind,
                strategy: m.strategy(d),
            });
        }
        merge(out)
    }

    fn check_reference(input: &[u8]) {
        for dets in [
            "[\"pan\"]",
            "[\"ssn\"]",
            "[\"pan\", \"ssn\", \"iban\", \"email\"]",
            "[\"iban\", \"email\"]",
        ] {
            let m = masker(&format!("[masking]\ndetectors = {dets}\n"));
            let expect = reference_find(&m, input);
            for isa in Isa::available() {
                assert_eq!(
                    m.find_with(isa, input),
                    expect,
                    "{isa:?} {dets} {:?}",
                    String::from_utf8_lossy(input)
                );
            }
            check_mask_into(&m, input, &expect);
        }
    }

    /// The streaming rewrite of every ISA equals the rewrite of the reference findings, into a
    /// fresh and into a dirty reused buffer.
    fn check_mask_into(m: &Masker, input: &[u8], expect: &[Finding]) {
        let want = m.rewrite(input, expect, |_| Mode::Text);
        for isa in Isa::available() {
            for mut out in [Vec::new(), b"stale bytes from the previous buffer".to_vec()] {
                let changed = m.mask_into_with(isa, input, &mut out);
                assert_eq!(changed, !expect.is_empty(), "{isa:?}");
                if changed {
                    assert_eq!(
                        String::from_utf8_lossy(&out),
                        String::from_utf8_lossy(&want),
                        "{isa:?}"
                    );
                } else {
                    assert!(out.is_empty(), "{isa:?}: out must be left empty");
                }
            }
        }
    }

    #[test]
    fn event_path_matches_reference_at_every_offset() {
        let seeds: [&[u8]; 10] = [
            b"123-45-6789",
            b"12-123-45-6789 x 123-45-6789-12 x 123-45-6789 12",
            b"666-45-6789 000-12-1234 123-00-1234 123-45-0000 899-99-9999",
            b"4111 1111 1111 1111 123-45-6789",
            b"123-45-6789-4111-1111-1111-1111",
            b"2024-03-04 10:05:00,+1 555-123-4567,ORD-00012345",
            b"GB29 NWBK 6016 1331 9268 19 john@example.com",
            b"4111111111111111@example.com DE89370400440532013000",
            b"a.very.long.local.part.that.crosses.a.chunk.boundary+tag@example.com 4111111111111111",
            b"6011 1111 1111 1117 123-45-6789 x@y.io 5555555555554444,3782-822463-10005",
        ];
        for seed in seeds {
            for pad in 0..70 {
                let mut v = vec![b'.'; pad];
                v.extend_from_slice(seed);
                check_reference(&v);
                let mut w = vec![b'1'; pad];
                w.push(b' ');
                w.extend_from_slice(seed);
                check_reference(&w);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn event_path_matches_reference(input in proptest::collection::vec(
            proptest::prop_oneof![
                8 => b'0'..=b'9',
                2 => proptest::prelude::Just(b' '),
                3 => proptest::prelude::Just(b'-'),
                1 => proptest::prelude::Just(b'@'),
                1 => proptest::prelude::Just(b'.'),
                2 => b'A'..=b'Z',
                2 => b'a'..=b'z',
            ],
            0..300,
        )) {
            check_reference(&input);
        }
    }

    /// Every strategy (including the length-changing hash) and merged overlaps, through
    /// `mask_into`, `mask_bytes` and the reference rewrite.
    #[test]
    fn mask_into_all_strategies() {
        let row: &[u8] = b"id 1 4111 1111 1111 1111@example.com, ssn 123-45-6789, \
            iban GB29 NWBK 6016 1331 9268 19; amex 3782-822463-10005 mail bob@mail.example.org\n";
        let big: Vec<u8> = row.repeat(40);
        for strat in ["redact", "last4", "hash", "null"] {
            let m = masker(&format!(
                "[masking]\ndetectors=[\"pan\",\"ssn\",\"iban\",\"email\"]\n\
                 [masking.strategies]\npan=\"{strat}\"\nemail=\"last4\"\n"
            ));
            let mut out = Vec::new();
            for input in [row, &big[..], &big[7..]] {
                let expect = m.find(input);
                assert!(!expect.is_empty());
                assert_eq!(expect, reference_find(&m, input), "{strat}");
                check_mask_into(&m, input, &expect);
                // A reused buffer gives the same bytes as a fresh result.
                assert!(m.mask_into(input, &mut out));
                assert_eq!(out, m.mask_bytes(input).into_owned(), "{strat}");
                assert!(!out.windows(16).any(|w| w == b"4111111111111111"));
            }
            assert!(!m.mask_into(b"nothing 2024-03-04 10:05:00 here", &mut out));
            assert!(out.is_empty());
        }
    }

    #[test]
    fn mask_into_with_custom_detectors() {
        let m = masker(
            "[masking]\ndetectors=[\"pan\"]\n[[masking.custom]]\nname=\"tok\"\nregex=\"tok_[a-z]+\"\n",
        );
        let mut out = vec![1, 2, 3];
        assert!(m.mask_into(b"a tok_abc 4111111111111111 b", &mut out));
        assert_eq!(out, b"a ***_*** ************1111 b");
        assert!(!m.mask_into(b"nothing", &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn masker_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Masker>();
    }

    #[test]
    fn merges_overlaps_with_strongest_strategy() {
        let m = masker(
            "[masking]\ndetectors=[\"pan\",\"email\"]\n[masking.strategies]\npan=\"last4\"\nemail=\"redact\"\n",
        );
        let f = m.find(b"4111111111111111@example.com");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].range, 0..28);
        assert_eq!(f[0].strategy, Strategy::Redact);
    }

    #[test]
    fn column_rules_order_and_tables() {
        let m = masker(
            "[masking]\n[[masking.columns]]\ncolumn=\"secret\"\ntable=\"pay*\"\nstrategy=\"null\"\n",
        );
        assert_eq!(
            m.column_rule(Some("payments"), "SECRET"),
            Some(Strategy::Null)
        );
        assert_eq!(m.column_rule(Some("users"), "secret"), None);
        assert_eq!(m.column_rule(None, "secret"), Some(Strategy::Null));
        assert_eq!(m.column_rule(None, "cvv"), Some(Strategy::Redact));
        assert_eq!(
            m.column_rule(Some("t"), "customer_card_number"),
            Some(Strategy::Last4)
        );
        assert_eq!(m.column_rule(None, "name"), None);
    }

    #[test]
    fn mask_str_keeps_utf8() {
        let m = masker("[[masking.custom]]\nname=\"x\"\nregex=\"ä+\"\n");
        assert_eq!(m.mask_str("aää b"), "a**** b");
    }
}
