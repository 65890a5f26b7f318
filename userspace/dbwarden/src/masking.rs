//! Masking of everything a PostgreSQL server sends back, applied to the state machine's
//! [`ServerOutput`] before a byte reaches the agent: result rows (text and binary, type-aware),
//! COPY TO STDOUT data, error and notice fields, notification payloads, fast-path results.
//!
//! Pure: bytes in, bytes out. Fail closed: any value that cannot be masked correctly yields
//! [`MaskFailure`] and the caller withholds the rest of that result.

use bytes::{Bytes, BytesMut};
use dbwarden_mask::{
    pg::{self, CopyFormat, CopyKind, MaskedValue},
    Masker,
};
use dbwarden_policy::copy::{CopyFormatKind, CopyOut};
use dbwarden_wire_pg::{
    backend::NotificationResponse,
    proxy::{CopyContext, ResultContext, ServerOutput},
    BackendMessage, Format,
};

/// Why a server message could not be masked (never contains data).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MaskFailure(pub String);

/// What the masker produced for one server message.
#[derive(Debug)]
pub struct Masked {
    /// Bytes to send to the client.
    pub bytes: Bytes,
    /// Whether anything was changed.
    pub changed: bool,
}

fn encode(m: BackendMessage) -> Result<Bytes, MaskFailure> {
    m.to_bytes()
        .map_err(|e| MaskFailure(format!("re-encoding failed: {e}")))
}

/// Masks one server output. `Forward` passes through untouched. `copy` caches the column rules
/// of the COPY in progress; `shapes` says how a COPY's data is laid out.
pub fn mask_output(
    masker: &Masker,
    out: ServerOutput,
    copy: &mut CopyRules,
    shapes: &dyn CopyShapes,
) -> Result<Masked, MaskFailure> {
    match out {
        ServerOutput::Forward(b) => Ok(Masked {
            bytes: b,
            changed: false,
        }),
        ServerOutput::RowDescription { description, raw } => {
            mask_row_description(masker, &description, raw)
        }
        ServerOutput::DataRow { row, context } => {
            if context.description.is_none() {
                // The proxy describes every portal before it runs: rows without a known
                // shape mean it lost track, and a binary int8 PAN would pass unseen.
                return Err(MaskFailure(
                    "rows arrived before their description; column types are unknown".into(),
                ));
            }
            let mut repl: Vec<(usize, MaskedValue)> = Vec::new();
            let rules = copy.row_rules(masker, &context);
            for (i, v) in row.values().enumerate() {
                let Some(v) = v else { continue };
                let mv = mask_cell(masker, &context, i, v, rules.get(i).copied().flatten())?;
                if !matches!(mv, MaskedValue::Unchanged) {
                    repl.push((i, mv));
                }
            }
            if repl.is_empty() {
                return Ok(Masked {
                    bytes: row.into_raw(),
                    changed: false,
                });
            }
            let vals: Vec<(usize, Option<&[u8]>)> = repl
                .iter()
                .map(|(i, mv)| match mv {
                    MaskedValue::Replaced(b) => (*i, Some(b.as_slice())),
                    _ => (*i, None),
                })
                .collect();
            let bytes = row
                .with_values(&vals)
                .map_err(|e| MaskFailure(format!("rebuilding a row failed: {e}")))?;
            Ok(Masked {
                bytes,
                changed: true,
            })
        }
        ServerOutput::CopyData { data, raw, context } => {
            match mask_copy(masker, &context, &data, copy, shapes)? {
                None => Ok(Masked {
                    bytes: raw,
                    changed: false,
                }),
                Some(v) => {
                    let mut buf = BytesMut::with_capacity(v.len() + 5);
                    dbwarden_wire_pg::proxy::encode_copy_data(&v, &mut buf)
                        .map_err(|e| MaskFailure(format!("re-encoding COPY data failed: {e}")))?;
                    Ok(Masked {
                        bytes: buf.freeze(),
                        changed: true,
                    })
                }
            }
        }
        ServerOutput::Error(mut e) => {
            let changed = e.rewrite_fields(|_, v| match masker.mask_str(v) {
                std::borrow::Cow::Borrowed(_) => None,
                std::borrow::Cow::Owned(s) => Some(s),
            });
            let bytes = e
                .to_bytes()
                .map_err(|e| MaskFailure(format!("re-encoding an error failed: {e}")))?;
            Ok(Masked { bytes, changed })
        }
        ServerOutput::Notice(mut n) => {
            let changed = n.rewrite_fields(|_, v| match masker.mask_str(v) {
                std::borrow::Cow::Borrowed(_) => None,
                std::borrow::Cow::Owned(s) => Some(s),
            });
            let bytes = n
                .to_bytes()
                .map_err(|e| MaskFailure(format!("re-encoding a notice failed: {e}")))?;
            Ok(Masked { bytes, changed })
        }
        ServerOutput::Notification(n) => {
            let channel = masker.mask_str(&n.channel).into_owned();
            let payload = masker.mask_str(&n.payload).into_owned();
            let changed = channel != n.channel || payload != n.payload;
            let bytes = encode(BackendMessage::NotificationResponse(NotificationResponse {
                pid: n.pid,
                channel,
                payload,
            }))?;
            Ok(Masked { bytes, changed })
        }
        ServerOutput::ParameterStatus { name, value, raw } => {
            let masked_name = masker.mask_str(&name);
            let masked = masker.mask_str(&value);
            if masked == value.as_str() && masked_name == name.as_str() {
                return Ok(Masked {
                    bytes: raw,
                    changed: false,
                });
            }
            let bytes = encode(BackendMessage::ParameterStatus {
                name: masked_name.into_owned(),
                value: masked.into_owned(),
            })?;
            Ok(Masked {
                bytes,
                changed: true,
            })
        }
        ServerOutput::FunctionResult { value, raw, .. } => match value {
            None => Ok(Masked {
                bytes: raw,
                changed: false,
            }),
            Some(v) => {
                if masker.contains_sensitive(&v) {
                    // Fast-path results carry no type: we cannot re-encode them faithfully.
                    Err(MaskFailure(
                        "a fast-path function result contains sensitive data".into(),
                    ))
                } else {
                    Ok(Masked {
                        bytes: raw,
                        changed: false,
                    })
                }
            }
        },
    }
}

fn mask_row_description(
    masker: &Masker,
    rd: &dbwarden_wire_pg::RowDescription,
    raw: Bytes,
) -> Result<Masked, MaskFailure> {
    let masked: Vec<std::borrow::Cow<'_, str>> =
        rd.fields.iter().map(|f| masker.mask_str(&f.name)).collect();
    if masked
        .iter()
        .all(|m| matches!(m, std::borrow::Cow::Borrowed(_)))
    {
        return Ok(Masked {
            bytes: raw,
            changed: false,
        });
    }
    let mut out = rd.clone();
    for (f, m) in out.fields.iter_mut().zip(masked) {
        if let std::borrow::Cow::Owned(m) = m {
            f.name = m;
        }
    }
    Ok(Masked {
        bytes: encode(BackendMessage::RowDescription(out))?,
        changed: true,
    })
}

fn mask_cell(
    masker: &Masker,
    ctx: &ResultContext,
    col: usize,
    v: &[u8],
    rule: Option<dbwarden_mask::Strategy>,
) -> Result<MaskedValue, MaskFailure> {
    let field = ctx.field(col);
    let type_oid = field.map_or(0, |f| f.type_oid);
    let binary = match ctx.format(col) {
        Some(Format::Binary) => true,
        Some(Format::Text) => false,
        // Unknown format (a portal the proxy never saw bound): text if it looks like text,
        // otherwise refuse rather than guess.
        None => {
            if std::str::from_utf8(v).is_ok() {
                false
            } else {
                return Err(MaskFailure(format!(
                    "column {} has an unknown result format and non-text content",
                    col + 1
                )));
            }
        }
    };
    pg::mask_value(masker, type_oid, binary, v, rule.as_ref()).map_err(|e| {
        // Column names come from the server (or an agent's alias) and may hold a PAN: mask
        // before truncating, since this message goes to the client and into the log.
        let name = field
            .map(|f| dbwarden_mask_safe_name(&masker.mask_str(&f.name)))
            .unwrap_or_else(|| format!("#{}", col + 1));
        MaskFailure(format!("column {name}: {e}"))
    })
}

/// Column names come from the database (and so, indirectly, from the agent): keep them short
/// and printable in messages.
fn dbwarden_mask_safe_name(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// Where the shape of a COPY comes from: the analysis the policy judged it by.
pub trait CopyShapes {
    /// The `ordinal`-th `COPY ... TO STDOUT` of `sql`.
    ///
    /// # Errors
    /// Not found, or options the masker cannot honour.
    fn copy_shape(&self, sql: &str, ordinal: usize) -> Result<CopyOut, String>;
}

impl CopyShapes for dbwarden_policy::Engine {
    fn copy_shape(&self, sql: &str, ordinal: usize) -> Result<CopyOut, String> {
        self.copy_out(sql, dbwarden_policy::Dialect::Postgres, ordinal)
    }
}

/// How to read one COPY stream: its format and each field's column rule.
struct CopyPlan {
    format: CopyFormat,
    rules: Vec<Option<dbwarden_mask::Strategy>>,
    /// The next chunk is the header row (column names: scanned, no column rules).
    header_pending: bool,
}

fn copy_plan(
    masker: &Masker,
    ctx: &CopyContext,
    shapes: &dyn CopyShapes,
) -> Result<CopyPlan, String> {
    if ctx.format == Format::Binary {
        return Ok(CopyPlan {
            format: CopyFormat::binary(),
            rules: Vec::new(),
            header_pending: false,
        });
    }
    let sql = ctx
        .sql
        .as_deref()
        .ok_or("COPY data of a statement dbwarden did not see")?;
    let shape = shapes.copy_shape(sql, ctx.ordinal)?;
    if let Some(e) = &shape.encoding {
        if dbwarden_policy::encoding::unsafe_client_encoding(e) {
            return Err("COPY ENCODING with quote or backslash trailing bytes".into());
        }
    }
    let columns = shape.columns.ok_or(
        "COPY TO STDOUT without named columns: column rules cannot be applied; list the columns, e.g. COPY t (a, b) TO STDOUT or COPY (SELECT a, b FROM t) TO STDOUT",
    )?;
    let kind = match shape.format {
        CopyFormatKind::Text => CopyKind::Text,
        CopyFormatKind::Csv => CopyKind::Csv,
        CopyFormatKind::Binary => CopyKind::Binary,
    };
    Ok(CopyPlan {
        format: CopyFormat {
            kind,
            delimiter: shape.delimiter,
            quote: shape.quote,
            escape: shape.escape,
            null: shape.null.into_bytes(),
        },
        rules: columns
            .iter()
            .map(|c| {
                c.as_ref()
                    .and_then(|c| masker.column_rule(c.table.as_deref(), &c.column))
            })
            .collect(),
        header_pending: shape.header,
    })
}

/// Per-session cache of column rules: the plan of the COPY in progress (made once per COPY,
/// not per row) and the rules of the last row description (glob matching once per result, not
/// per cell).
#[derive(Default)]
pub struct CopyRules {
    copy: Option<std::sync::Arc<CopyContext>>,
    plan: Option<Result<CopyPlan, String>>,
    row_desc: Option<std::sync::Arc<dbwarden_wire_pg::RowDescription>>,
    row_rules: Vec<Option<dbwarden_mask::Strategy>>,
}

impl CopyRules {
    /// Whether `desc` is not the description the current row rules were made for (same
    /// names from the same source columns count as the same: simple queries and libpq's
    /// Describe-per-execute bring a fresh description with every result).
    pub fn is_new(&self, desc: &std::sync::Arc<dbwarden_wire_pg::RowDescription>) -> bool {
        !self.row_desc.as_ref().is_some_and(|c| {
            std::sync::Arc::ptr_eq(c, desc)
                || (c.fields.len() == desc.fields.len()
                    && c.fields.iter().zip(&desc.fields).all(|(a, b)| {
                        a.name == b.name
                            && a.table_oid == b.table_oid
                            && a.column_attr == b.column_attr
                    }))
        })
    }

    /// Makes the row rules of `desc`: for each field, the stronger of the rule on its source
    /// column (`sources`, from the catalog; shorter or empty when unknown) and the rule on its
    /// output name.
    pub fn prepare_rows(
        &mut self,
        masker: &Masker,
        desc: &std::sync::Arc<dbwarden_wire_pg::RowDescription>,
        sources: &[Option<crate::catalog::SourceColumn>],
    ) {
        self.row_rules = desc
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let by_source = sources
                    .get(i)
                    .and_then(Option::as_ref)
                    .and_then(|s| masker.column_rule(Some(&s.table), &s.column));
                dbwarden_mask::Strategy::stronger(by_source, masker.column_rule(None, &f.name))
            })
            .collect();
        self.row_desc = Some(desc.clone());
    }

    fn row_rules(
        &mut self,
        masker: &Masker,
        ctx: &ResultContext,
    ) -> &[Option<dbwarden_mask::Strategy>] {
        match &ctx.description {
            None => {
                self.row_desc = None;
                self.row_rules.clear();
            }
            Some(d) => {
                if self.is_new(d) {
                    self.prepare_rows(masker, d, &[]);
                }
            }
        }
        &self.row_rules
    }
}

fn mask_copy(
    masker: &Masker,
    ctx: &std::sync::Arc<CopyContext>,
    data: &[u8],
    cache: &mut CopyRules,
    shapes: &dyn CopyShapes,
) -> Result<Option<Vec<u8>>, MaskFailure> {
    if !cache
        .copy
        .as_ref()
        .is_some_and(|c| std::sync::Arc::ptr_eq(c, ctx))
    {
        cache.copy = Some(ctx.clone());
        cache.plan = Some(copy_plan(masker, ctx, shapes));
    }
    let plan = match cache.plan.as_mut() {
        Some(Ok(p)) => p,
        Some(Err(e)) => return Err(MaskFailure(e.clone())),
        None => return Err(MaskFailure("no COPY plan".into())),
    };
    let rules: &[Option<dbwarden_mask::Strategy>] = if plan.header_pending {
        plan.header_pending = false;
        &[]
    } else {
        &plan.rules
    };
    pg::mask_copy_data(masker, data, &plan.format, rules)
        .map_err(|e| MaskFailure(format!("COPY data: {e}")))
}

#[cfg(test)]
mod copy_tests {
    use super::*;
    use dbwarden_mask::MaskConfig;
    use dbwarden_wire_pg::proxy::RequestId;

    fn engine() -> dbwarden_policy::Engine {
        dbwarden_policy::Engine::new(
            dbwarden_policy::Policy::parse("[policy]\nname = \"t\"\ndefault = \"allow\"\n", "t")
                .unwrap(),
        )
    }

    fn ctx(sql: &str, ordinal: usize) -> std::sync::Arc<CopyContext> {
        std::sync::Arc::new(CopyContext {
            request: RequestId(1),
            sql: Some(sql.into()),
            format: Format::Text,
            column_formats: std::sync::Arc::from(Vec::new()),
            both: false,
            ordinal,
        })
    }

    fn mask(sql: &str, ordinal: usize, rows: &[&[u8]]) -> Result<Vec<Vec<u8>>, MaskFailure> {
        let m = Masker::new(&MaskConfig::from_policy_toml("", "t").unwrap(), [0; 32]).unwrap();
        let (e, c) = (engine(), ctx(sql, ordinal));
        let mut cache = CopyRules::default();
        rows.iter()
            .map(|r| mask_copy(&m, &c, r, &mut cache, &e).map(|o| o.unwrap_or_else(|| r.to_vec())))
            .collect()
    }

    #[test]
    fn copy_columns_are_named_or_refused() {
        assert!(mask("COPY cards TO STDOUT", 0, &[b"1\n"]).is_err());
        assert!(mask("COPY (SELECT * FROM cards) TO STDOUT", 0, &[b"1\n"]).is_err());
        let out = mask("COPY cards (id, cvv) TO STDOUT", 0, &[b"1\t123\n"]).unwrap();
        assert_ne!(out[0], b"1\t123\n");
        // Options come from the statement: a ';'-delimited CSV with a header row.
        let out = mask(
            "COPY (SELECT id, x AS cvv, upper(n) FROM t) TO STDOUT WITH (FORMAT csv, DELIMITER ';', HEADER)",
            0,
            &[b"id;cvv;upper\n", b"1;123;AB\n"],
        )
        .unwrap();
        assert_eq!(out[0], b"id;cvv;upper\n", "the header is not a row");
        assert!(out[1].starts_with(b"1;\"") && !out[1].windows(3).any(|w| w == b"123"));
        // The second COPY of a query string gets its own columns.
        let sql = "COPY (SELECT id, note FROM t) TO STDOUT; COPY (SELECT cvv FROM t) TO STDOUT";
        assert_eq!(mask(sql, 0, &[b"1\t123\n"]).unwrap()[0], b"1\t123\n");
        assert_ne!(mask(sql, 1, &[b"123\n"]).unwrap()[0], b"123\n");
        assert!(mask(sql, 2, &[b"123\n"]).is_err());
        // An encoding whose trailing bytes can be a backslash is not read.
        assert!(mask("COPY t (a) TO STDOUT (ENCODING 'SJIS')", 0, &[b"1\n"]).is_err());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dbwarden_mask::MaskConfig;
    use dbwarden_wire_pg::{
        data_row::encode_data_row,
        proxy::{RequestId, ResultFormats},
        DataRow, ErrorResponse, FieldDescription, RowDescription,
    };

    use super::*;

    struct NoCopies;
    impl CopyShapes for NoCopies {
        fn copy_shape(&self, _: &str, _: usize) -> Result<CopyOut, String> {
            Err("no COPY here".into())
        }
    }

    fn masker() -> Masker {
        let cfg = MaskConfig::from_policy_toml("", "test").unwrap();
        Masker::new(&cfg, [7u8; 32]).unwrap()
    }

    fn field(name: &str, oid: u32) -> FieldDescription {
        FieldDescription {
            name: name.into(),
            table_oid: 0,
            column_attr: 0,
            type_oid: oid,
            type_len: -1,
            type_mod: -1,
            format: Format::Text,
        }
    }

    fn row_ctx(fields: Vec<FieldDescription>, formats: ResultFormats) -> Arc<ResultContext> {
        Arc::new(ResultContext {
            request: RequestId(1),
            sql: None,
            description: Some(Arc::new(RowDescription { fields })),
            formats,
        })
    }

    #[test]
    fn text_and_binary_rows_are_masked() {
        let m = masker();
        let mut b = BytesMut::new();
        let pan8 = 4111111111111111i64.to_be_bytes();
        encode_data_row(
            &[
                Some(b"4111 1111 1111 1111"),
                Some(&pan8),
                Some(b"123"),
                None,
            ],
            &mut b,
        )
        .unwrap();
        let row = DataRow::parse(b.freeze()).unwrap();
        let ctx = row_ctx(
            vec![
                field("note", 25),
                field("n", 20),
                field("cvv", 25),
                field("x", 25),
            ],
            ResultFormats::PerColumn(Arc::from(vec![
                Format::Text,
                Format::Binary,
                Format::Text,
                Format::Text,
            ])),
        );
        let out = mask_output(
            &m,
            ServerOutput::DataRow { row, context: ctx },
            &mut CopyRules::default(),
            &NoCopies,
        )
        .unwrap();
        assert!(out.changed);
        let back = DataRow::parse(out.bytes).unwrap();
        let note = back.get(0).unwrap().unwrap();
        assert!(
            !String::from_utf8_lossy(note).contains("4111 1111 1111"),
            "{note:?}"
        );
        assert!(String::from_utf8_lossy(note).ends_with("1111"));
        let n = i64::from_be_bytes(back.get(1).unwrap().unwrap().try_into().unwrap());
        assert_eq!(n, 1111);
        assert_ne!(back.get(2).unwrap().unwrap(), b"123", "cvv column rule");
        assert_eq!(back.get(3).unwrap(), None);
    }

    #[test]
    fn error_detail_is_masked() {
        let m = masker();
        let e = ErrorResponse::new(
            "ERROR",
            "23505",
            "duplicate key value violates unique constraint",
        )
        .with_detail("Key (pan)=(4111111111111111) already exists.");
        let out = mask_output(
            &m,
            ServerOutput::Error(e),
            &mut CopyRules::default(),
            &NoCopies,
        )
        .unwrap();
        assert!(out.changed);
        let text = String::from_utf8_lossy(&out.bytes);
        assert!(!text.contains("4111111111111111"), "{text}");
    }
}
