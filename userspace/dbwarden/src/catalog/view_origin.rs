//! Where a view's output columns come from, read from its rewrite rule
//! (`pg_rewrite.ev_action`, the node-tree text of the view's query). PostgreSQL marks each
//! top-level target entry with the table column it is a plain reference to (`:resorigtbl`,
//! `:resorigcol`, set by the parser's `markTargetListOrigins`); an expression has `0 0`.
//! RowDescription names the view's own column, so this is how a rule on `cards.cvv` reaches
//! `create view v as select cvv as x from cards`.

/// The origin of one output column of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The view's attribute number (`resno`).
    pub attnum: i16,
    /// The relation (table or another view) it reads, by OID.
    pub table: u32,
    /// That relation's attribute number.
    pub column: i16,
}

/// The origins of the view query's output columns (plain column references only), from its
/// `ev_action` text. Anything it cannot read yields no origins (the column then has none).
pub fn origins(ev_action: &str) -> Vec<Origin> {
    let b = ev_action.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    // Find `:targetList` at the top-level query's own depth.
    let mut list_at = None;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            b':' if depth == 1 && b[i..].starts_with(b":targetList ") => {
                list_at = Some(i + ":targetList ".len());
                break;
            }
            _ => {}
        }
        i += 1;
    }
    let Some(mut i) = list_at else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let (mut resno, mut tbl, mut col, mut junk) = (None, None, None, false);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => {
                depth += 1;
                if depth == 2 {
                    (resno, tbl, col, junk) = (None, None, None, false);
                }
            }
            b'}' => {
                if depth == 2 && !junk {
                    if let (Some(attnum), Some(table), Some(column)) = (resno, tbl, col) {
                        if table != 0 && column > 0 {
                            out.push(Origin {
                                attnum,
                                table,
                                column,
                            });
                        }
                    }
                }
                depth = depth.saturating_sub(1);
            }
            // The next field of the top-level query: the list is over.
            b':' if depth == 1 => break,
            b':' if depth == 2 => {
                let rest = &ev_action[i..];
                let value = |name: &str| {
                    rest.strip_prefix(name)
                        .and_then(|r| r.split_ascii_whitespace().next())
                };
                if let Some(v) = value(":resno ") {
                    resno = v.parse().ok();
                } else if let Some(v) = value(":resorigtbl ") {
                    tbl = v.parse().ok();
                } else if let Some(v) = value(":resorigcol ") {
                    col = v.parse().ok();
                } else if let Some(v) = value(":resjunk ") {
                    junk = v.starts_with("true");
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `create view v as select id as ident, cvv as x, upper(cvv) as u, (select 1) as s from t`
    /// on PostgreSQL 15 (abridged where it does not matter).
    const VIEW: &str = r#"({QUERY :commandType 1 :querySource 0 :canSetTag true :utilityStmt <> :cteList <> :rtable ({RANGETBLENTRY :alias {ALIAS :aliasname old :colnames <>} :eref {ALIAS :aliasname old :colnames ("ident" "x")} :rtekind 0 :relid 16936 :relkind v} {RANGETBLENTRY :alias <> :eref {ALIAS :aliasname zz_t :colnames ("id" "cvv")} :rtekind 0 :relid 16931 :relkind r :selectedCols (b 8 9)}) :jointree {FROMEXPR :fromlist ({RANGETBLREF :rtindex 3}) :quals <>} :targetList ({TARGETENTRY :expr {VAR :varno 3 :varattno 1 :vartype 23 :location 89} :resno 1 :resname ident :ressortgroupref 0 :resorigtbl 16931 :resorigcol 1 :resjunk false} {TARGETENTRY :expr {VAR :varno 3 :varattno 2 :vartype 25 :location 102} :resno 2 :resname x :ressortgroupref 0 :resorigtbl 16931 :resorigcol 2 :resjunk false} {TARGETENTRY :expr {FUNCEXPR :funcid 871 :args ({VAR :varno 3 :varattno 2 :location 118}) :location 112} :resno 3 :resname u :ressortgroupref 0 :resorigtbl 0 :resorigcol 0 :resjunk false} {TARGETENTRY :expr {SUBLINK :subLinkType 4 :subselect {QUERY :commandType 1 :rtable <> :targetList ({TARGETENTRY :expr {CONST :consttype 23} :resno 1 :resname ?column? :ressortgroupref 0 :resorigtbl 99 :resorigcol 7 :resjunk false}) :override 0} :location 130} :resno 4 :resname s :ressortgroupref 0 :resorigtbl 0 :resorigcol 0 :resjunk false} {TARGETENTRY :expr {VAR :varno 3} :resno 5 :resname \{odd\ name\} :resorigtbl 16931 :resorigcol 2 :resjunk true}) :override 0 :onConflict <> :returningList <>})"#;

    #[test]
    fn plain_references_only_from_the_top_level_list() {
        assert_eq!(
            origins(VIEW),
            vec![
                Origin {
                    attnum: 1,
                    table: 16931,
                    column: 1
                },
                Origin {
                    attnum: 2,
                    table: 16931,
                    column: 2
                },
            ]
        );
        assert!(origins("").is_empty());
        assert!(origins("garbage {{{").is_empty());
    }
}
