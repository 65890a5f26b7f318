//! What a `COPY ... TO STDOUT` sends, as the statement says it: format, options and the
//! names of its columns. The masker reads the data stream with exactly these (a CSV with
//! `DELIMITER ';'` split on tabs would put the CVV in the wrong field); an option it cannot
//! honour is an error, and the data is then withheld.

use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, Expr, SelectItem, SetExpr,
    Statement,
};

/// Layout of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormatKind {
    /// `FORMAT text` (the default).
    Text,
    /// `FORMAT csv`.
    Csv,
    /// `FORMAT binary`.
    Binary,
}

/// One output column of a COPY, as named in the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyColumn {
    /// The table, for `COPY t (a, b)`.
    pub table: Option<String>,
    /// The column name, or the alias of a query's output column.
    pub column: String,
}

/// The shape of a `COPY ... TO STDOUT` stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOut {
    /// Text, CSV or binary.
    pub format: CopyFormatKind,
    /// Field delimiter.
    pub delimiter: u8,
    /// CSV quote character.
    pub quote: u8,
    /// CSV escape character.
    pub escape: u8,
    /// How NULL is written.
    pub null: String,
    /// The first row holds the column names.
    pub header: bool,
    /// The `ENCODING` option, if given.
    pub encoding: Option<String>,
    /// One entry per output column (`None` for an unnamed expression); `None` when the
    /// columns are not named in the statement (`COPY t`, `SELECT *`).
    pub columns: Option<Vec<Option<CopyColumn>>>,
}

/// The shape of `stmt` if it is a `COPY ... TO STDOUT`: `None` for any other statement,
/// `Some(Err(why))` for options the masker cannot honour.
pub(crate) fn copy_out(stmt: &Statement) -> Option<Result<CopyOut, String>> {
    let Statement::Copy {
        source,
        to: true,
        target: sqlparser::ast::CopyTarget::Stdout,
        options,
        legacy_options,
        ..
    } = stmt
    else {
        return None;
    };
    Some(shape(source, options, legacy_options))
}

fn byte(c: char, what: &str) -> Result<u8, String> {
    u8::try_from(c)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| format!("COPY {what} must be one ASCII character"))
}

fn shape(
    source: &CopySource,
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<CopyOut, String> {
    let mut format = CopyFormatKind::Text;
    let (mut delimiter, mut quote, mut escape, mut null) = (None, None, None, None);
    let mut header = false;
    let mut encoding = None;
    for o in options {
        match o {
            CopyOption::Format(f) => {
                format = match f.value.to_ascii_lowercase().as_str() {
                    "text" => CopyFormatKind::Text,
                    "csv" => CopyFormatKind::Csv,
                    "binary" => CopyFormatKind::Binary,
                    _ => return Err("unknown COPY format".into()),
                }
            }
            CopyOption::Delimiter(c) => delimiter = Some(byte(*c, "delimiter")?),
            CopyOption::Quote(c) => quote = Some(byte(*c, "quote")?),
            CopyOption::Escape(c) => escape = Some(byte(*c, "escape")?),
            CopyOption::Null(s) => null = Some(s.clone()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Encoding(e) => encoding = Some(e.clone()),
            // Output quoting only: the CSV reader handles quoted fields anyway.
            CopyOption::ForceQuote(_) => {}
            // COPY FROM options (the server refuses them for TO).
            CopyOption::Freeze(_) | CopyOption::ForceNotNull(_) | CopyOption::ForceNull(_) => {}
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Binary => format = CopyFormatKind::Binary,
            CopyLegacyOption::Delimiter(c) => delimiter = Some(byte(*c, "delimiter")?),
            CopyLegacyOption::Null(s) => null = Some(s.clone()),
            CopyLegacyOption::Header => header = true,
            CopyLegacyOption::Csv(csv) => {
                format = CopyFormatKind::Csv;
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(q) => quote = Some(byte(*q, "quote")?),
                        CopyLegacyCsvOption::Escape(e) => escape = Some(byte(*e, "escape")?),
                        CopyLegacyCsvOption::ForceQuote(_)
                        | CopyLegacyCsvOption::ForceNotNull(_) => {}
                    }
                }
            }
            _ => return Err("COPY option not known to PostgreSQL".into()),
        }
    }
    let csv = format == CopyFormatKind::Csv;
    let quote = quote.unwrap_or(b'"');
    Ok(CopyOut {
        format,
        delimiter: delimiter.unwrap_or(if csv { b',' } else { b'\t' }),
        quote,
        escape: escape.unwrap_or(quote),
        null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
        header,
        encoding,
        columns: columns(source),
    })
}

fn columns(source: &CopySource) -> Option<Vec<Option<CopyColumn>>> {
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
                    .map(|c| {
                        Some(CopyColumn {
                            table: table.clone(),
                            column: c.value.clone(),
                        })
                    })
                    .collect(),
            )
        }
        CopySource::Query(q) => match q.body.as_ref() {
            SetExpr::Select(sel) => sel
                .projection
                .iter()
                .map(|item| {
                    let named = |c: &str| {
                        Some(Some(CopyColumn {
                            table: None,
                            column: c.to_owned(),
                        }))
                    };
                    match item {
                        SelectItem::UnnamedExpr(Expr::Identifier(i)) => named(&i.value),
                        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(v)) => {
                            v.last().and_then(|i| named(&i.value))
                        }
                        SelectItem::ExprWithAlias { alias, .. } => named(&alias.value),
                        SelectItem::UnnamedExpr(_) => Some(None),
                        // `*`, `t.*`: the fields are unknown.
                        _ => None,
                    }
                })
                .collect(),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(sql: &str) -> Result<CopyOut, String> {
        let stmts =
            sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, sql)
                .unwrap();
        copy_out(&stmts[0]).expect("a COPY TO STDOUT")
    }

    #[test]
    fn options_new_and_legacy() {
        let c = of("COPY t (a, cvv) TO STDOUT").unwrap();
        assert_eq!(
            (c.format, c.delimiter, c.null.as_str()),
            (CopyFormatKind::Text, b'\t', "\\N")
        );
        assert_eq!(c.columns.unwrap()[1].as_ref().unwrap().column, "cvv");
        let c = of("COPY (SELECT a, x AS cvv, upper(n) FROM t) TO STDOUT (FORMAT csv, DELIMITER ';', QUOTE '''', ESCAPE E'\\\\', NULL 'nil', HEADER)").unwrap();
        assert_eq!(
            (
                c.format,
                c.delimiter,
                c.quote,
                c.escape,
                c.null.as_str(),
                c.header
            ),
            (CopyFormatKind::Csv, b';', b'\'', b'\\', "nil", true)
        );
        let cols = c.columns.unwrap();
        assert_eq!(cols.len(), 3);
        assert!(cols[2].is_none());
        let c = of("COPY t (a) TO STDOUT WITH CSV HEADER QUOTE AS '|'").unwrap();
        assert_eq!(
            (c.format, c.quote, c.escape, c.header),
            (CopyFormatKind::Csv, b'|', b'|', true)
        );
        let c = of("COPY t (a) TO STDOUT WITH DELIMITER AS ','").unwrap();
        assert_eq!((c.format, c.delimiter), (CopyFormatKind::Text, b','));
        assert_eq!(
            of("COPY t TO STDOUT (FORMAT binary)").unwrap().format,
            CopyFormatKind::Binary
        );
        assert!(of("COPY t TO STDOUT").unwrap().columns.is_none());
        assert!(of("COPY (SELECT * FROM t) TO STDOUT")
            .unwrap()
            .columns
            .is_none());
    }
}
