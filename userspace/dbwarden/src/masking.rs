//! Masking of everything a PostgreSQL server sends back, applied to the state machine's
//! [`ServerOutput`] before a byte reaches the agent: result rows (text and binary, type-aware),
//! COPY TO STDOUT data, error and notice fields, notification payloads, fast-path results.
//!
//! Pure: bytes in, bytes out. Fail closed: any value that cannot be masked correctly yields
//! [`MaskFailure`] and the caller withholds the rest of that result.

use bytes::{Bytes, BytesMut};
use dbwarden_mask::{
    pg::{self, CopyFormat, MaskedValue},
    Masker,
};
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
/// of the COPY in progress.
pub fn mask_output(
    masker: &Masker,
    out: ServerOutput,
    copy: &mut CopyRules,
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
            match mask_copy(masker, &context, &data, copy)? {
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

fn copy_format(ctx: &CopyContext) -> CopyFormat {
    if ctx.format == Format::Binary {
        return CopyFormat::Binary;
    }
    let sql = ctx.sql.as_deref().unwrap_or("").to_ascii_lowercase();
    if sql.contains("csv") {
        CopyFormat::CSV
    } else {
        CopyFormat::TEXT
    }
}

/// Column rules for the fields of a COPY TO STDOUT, by position, from the statement text:
/// `COPY t (a, b)` names its columns; `COPY (SELECT a, x AS b ...)` names them through plain
/// column references and aliases. `None` when the fields cannot be named — a bare `COPY t`, a
/// `*` in the query, unparseable text — so column rules (CVV!) could not be applied: the caller
/// fails closed.
pub fn copy_rules(
    masker: &Masker,
    sql: Option<&str>,
) -> Option<Vec<Option<dbwarden_mask::Strategy>>> {
    use sqlparser::ast::{CopySource, Expr, SelectItem, SetExpr, Statement};
    let stmts =
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, sql?)
            .ok()?;
    let Some(Statement::Copy {
        source, to: true, ..
    }) = stmts.first()
    else {
        return None;
    };
    match source {
        CopySource::Table {
            table_name,
            columns,
        } => {
            if columns.is_empty() {
                return None;
            }
            let table = table_name
                .0
                .last()
                .map(|p| p.to_string().trim_matches('"').to_string());
            Some(
                columns
                    .iter()
                    .map(|c| masker.column_rule(table.as_deref(), &c.value))
                    .collect(),
            )
        }
        CopySource::Query(q) => match q.body.as_ref() {
            SetExpr::Select(sel) => sel
                .projection
                .iter()
                .map(|item| match item {
                    SelectItem::UnnamedExpr(Expr::Identifier(i)) => {
                        Some(masker.column_rule(None, &i.value))
                    }
                    SelectItem::UnnamedExpr(Expr::CompoundIdentifier(v)) => {
                        Some(v.last().and_then(|i| masker.column_rule(None, &i.value)))
                    }
                    SelectItem::ExprWithAlias { alias, .. } => {
                        Some(masker.column_rule(None, &alias.value))
                    }
                    SelectItem::UnnamedExpr(_) => Some(None),
                    _ => None, // `*`, `t.*`: the fields are unknown
                })
                .collect(),
            _ => None,
        },
    }
}

/// Per-session cache of column rules: those of the COPY in progress (parsed once per COPY, not
/// per row) and those of the last row description (glob matching once per result, not per cell).
#[derive(Default)]
pub struct CopyRules {
    request: Option<u64>,
    rules: Option<Vec<Option<dbwarden_mask::Strategy>>>,
    row_desc: Option<std::sync::Arc<dbwarden_wire_pg::RowDescription>>,
    row_rules: Vec<Option<dbwarden_mask::Strategy>>,
}

impl CopyRules {
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
                // Simple queries and libpq's Describe-per-execute bring a fresh description
                // with every result: compare the names, not the allocation.
                let same = self.row_desc.as_ref().is_some_and(|c| {
                    std::sync::Arc::ptr_eq(c, d)
                        || (c.fields.len() == d.fields.len()
                            && c.fields
                                .iter()
                                .zip(&d.fields)
                                .all(|(a, b)| a.name == b.name))
                });
                if !same {
                    self.row_rules = d
                        .fields
                        .iter()
                        .map(|f| masker.column_rule(None, &f.name))
                        .collect();
                    self.row_desc = Some(d.clone());
                }
            }
        }
        &self.row_rules
    }
}

fn mask_copy(
    masker: &Masker,
    ctx: &CopyContext,
    data: &[u8],
    cache: &mut CopyRules,
) -> Result<Option<Vec<u8>>, MaskFailure> {
    let fmt = copy_format(ctx);
    if cache.request != Some(ctx.request.0) {
        cache.request = Some(ctx.request.0);
        cache.rules = copy_rules(masker, ctx.sql.as_deref());
    }
    let Some(rules) = &cache.rules else {
        return Err(MaskFailure(
            "COPY TO STDOUT without named columns: column rules cannot be applied; list the columns, e.g. COPY t (a, b) TO STDOUT or COPY (SELECT a, b FROM t) TO STDOUT".into(),
        ));
    };
    pg::mask_copy_data(masker, data, fmt, rules).map_err(|e| MaskFailure(format!("COPY data: {e}")))
}

#[cfg(test)]
mod copy_tests {
    use super::*;
    use dbwarden_mask::MaskConfig;

    #[test]
    fn copy_columns_are_named_or_refused() {
        let m = Masker::new(&MaskConfig::from_policy_toml("", "t").unwrap(), [0; 32]).unwrap();
        assert!(copy_rules(&m, Some("COPY cards TO STDOUT")).is_none());
        assert!(copy_rules(&m, Some("COPY (SELECT * FROM cards) TO STDOUT")).is_none());
        let r = copy_rules(&m, Some("COPY cards (id, cvv) TO STDOUT")).unwrap();
        assert!(r[0].is_none() && r[1].is_some());
        let r = copy_rules(
            &m,
            Some("COPY (SELECT id, x AS cvv, upper(n) FROM t) TO STDOUT WITH (FORMAT csv)"),
        )
        .unwrap();
        assert_eq!(r.len(), 3);
        assert!(r[1].is_some() && r[2].is_none());
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
        let out = mask_output(&m, ServerOutput::Error(e), &mut CopyRules::default()).unwrap();
        assert!(out.changed);
        let text = String::from_utf8_lossy(&out.bytes);
        assert!(!text.contains("4111111111111111"), "{text}");
    }
}
