//! The collector's bookkeeping: kinds, tables, settings, row bounds, and the code it finds
//! inside strings and function bodies (nested statements, opaque code).

use super::*;

impl Collector<'_> {
    pub(super) fn kind(&mut self, k: Kind) {
        self.f.kinds.insert(k);
        if self.stack.len() == 1 && self.f.primary.is_none() {
            self.f.primary = Some(k);
        }
    }
    pub(super) fn kinds(&mut self, ks: &[Kind]) {
        for k in ks {
            self.kind(*k);
        }
    }
    pub(super) fn written(&mut self, n: &ObjectName) {
        self.f.tables_written.push(norm_name(n));
    }
    pub(super) fn write_factor(&mut self, tf: &TableFactor) {
        if let TableFactor::Table { name, .. } = tf {
            self.written(name);
        }
        self.write_factors.push(std::ptr::from_ref(tf) as usize);
    }
    pub(super) fn setting(&mut self, n: &ObjectName) {
        let name = norm_name(n);
        if let Some(last) = name.last() {
            // GUC names are case-insensitive, quoted or not.
            let last = last.to_lowercase();
            if name.len() == 1 && matches!(last.as_str(), "role" | "session_authorization") {
                self.kind(Kind::SetRole);
            }
            self.f.settings.push(last);
        }
    }

    /// A `WHERE` that provably keeps every row counts as none.
    pub(super) fn where_less(&mut self, sel: Option<&Expr>) -> bool {
        match sel {
            None => true,
            Some(e) => {
                let mut lit = false;
                let t = fold::always_true(e, &mut lit);
                if lit {
                    self.cacheable = false;
                }
                t
            }
        }
    }

    pub(super) fn current_bound(&self) -> Option<u64> {
        self.qstack.last().copied().flatten()
    }

    pub(super) fn record_read(&mut self, name: Name, bound: Option<u64>) {
        if self.out_stack.last().copied().unwrap_or(false) {
            self.f.reads.push((name, bound));
        }
    }

    pub(super) fn opaque(&mut self) {
        self.kind(Kind::DynamicSql);
    }

    /// SQL text the server will run (a query-string argument, a function
    /// body): judged as nested statements of this one.
    pub(super) fn nested_sql(&mut self, text: &str, per_row: bool) {
        self.cacheable = false;
        let a = analyze_ctx(
            text,
            self.dialect,
            Ctx {
                depth: self.cx.depth + 1,
                ..self.cx
            },
        );
        let outer = if per_row {
            self.current_bound()
        } else {
            Some(1)
        };
        for st in &a.statements {
            if st.parse_error.is_some() {
                self.opaque();
                continue;
            }
            let mut st = st.clone();
            // The nested query's rows reach the client through this one.
            for r in &mut st.reads {
                r.1 = times(r.1, outer);
            }
            if !self.out_stack.last().copied().unwrap_or(false) {
                st.reads.clear();
            }
            let reads = std::mem::take(&mut st.reads);
            let (limit, no_limit) = (self.f.limit, self.f.no_limit);
            merge(&mut self.f, &st);
            self.f.limit = limit;
            self.f.no_limit = no_limit;
            self.f.reads.extend(reads);
        }
    }

    pub(super) fn sql_arg(&mut self, arg: Option<&Expr>, per_row: bool) {
        let Some(e) = arg else {
            self.opaque();
            return;
        };
        let mut lit = false;
        match fold::const_string(e, &mut lit) {
            Some(text) => self.nested_sql(&text, per_row),
            None => self.opaque(),
        }
        if lit {
            self.cacheable = false;
        }
    }

    /// Functions with meaning beyond their name: `set_config` (a `SET`),
    /// and functions that execute a query string.
    pub(super) fn function_call(&mut self, f: &sqlparser::ast::Function) {
        match &f.args {
            FunctionArguments::List(l) => self.function_call_args(&f.name, &l.args),
            _ => self.function_call_args(&f.name, &[]),
        }
    }

    pub(super) fn function_call_args(&mut self, fname: &ObjectName, fargs: &[FunctionArg]) {
        let name: Vec<String> = norm_name(fname).iter().map(|p| p.to_lowercase()).collect();
        let Some(last) = name.last().map(String::as_str) else {
            return;
        };
        let args: Vec<&Expr> = {
            fargs
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(x))
                    | FunctionArg::Named {
                        arg: FunctionArgExpr::Expr(x),
                        ..
                    }
                    | FunctionArg::ExprNamed {
                        arg: FunctionArgExpr::Expr(x),
                        ..
                    } => Some(x),
                    _ => None,
                })
                .collect()
        };
        let is_bool = |e: &Expr| {
            let mut l = false;
            matches!(fold::eval(e, &mut l), fold::Val::Bool(_))
        };
        match last {
            "set_config" => {
                self.kind(Kind::Set);
                let named = fargs.iter().find_map(|a| match a {
                    FunctionArg::Named {
                        name,
                        arg: FunctionArgExpr::Expr(x),
                        ..
                    } if name.value.eq_ignore_ascii_case("setting_name") => Some(x),
                    _ => None,
                });
                let has_named = fargs.iter().any(|a| !matches!(a, FunctionArg::Unnamed(_)));
                let target = if has_named {
                    named
                } else {
                    args.first().copied()
                };
                let mut lit = false;
                let guc = target.and_then(|e| fold::const_string(e, &mut lit));
                self.cacheable = false;
                match guc {
                    // PostgreSQL compares GUC names ASCII case-insensitively
                    // and exactly (no trimming).
                    Some(g) => {
                        let g = g.to_ascii_lowercase();
                        if g == "role" || g == "session_authorization" {
                            self.kind(Kind::SetRole);
                        }
                        self.f.settings.push(g);
                    }
                    None => {
                        // Name not visible: it may be the role.
                        self.kind(Kind::SetRole);
                        self.f.settings.push("role".to_owned());
                    }
                }
            }
            "query_to_xml" | "query_to_xmlschema" | "query_to_xml_and_xmlschema" | "ts_stat" => {
                self.sql_arg(args.first().copied(), true);
            }
            "dblink" | "dblink_exec" => {
                let i = match args.len() {
                    0 | 1 => 0,
                    2 if is_bool(args[1]) => 0,
                    _ => 1,
                };
                self.sql_arg(args.get(i).copied(), true);
            }
            "dblink_open" => {
                let i = match args.len() {
                    0..=2 => 1,
                    3 if is_bool(args[2]) => 1,
                    _ => 2,
                };
                self.sql_arg(args.get(i).copied(), true);
            }
            "dblink_send_query" => self.sql_arg(args.get(1).copied(), true),
            "table_to_xml" | "table_to_xmlschema" | "table_to_xml_and_xmlschema" => {
                let mut lit = false;
                match args.first().and_then(|e| fold::const_string(e, &mut lit)) {
                    Some(t) => {
                        let t = format!("SELECT * FROM {t}");
                        self.nested_sql(&t, true);
                    }
                    None => self.opaque(),
                }
                self.cacheable = false;
            }
            "schema_to_xml"
            | "schema_to_xmlschema"
            | "schema_to_xml_and_xmlschema"
            | "database_to_xml"
            | "database_to_xmlschema"
            | "database_to_xml_and_xmlschema" => self.opaque(),
            _ => {
                let hit = self.cx.extra.iter().find(|(pat, _)| {
                    pat.len() <= name.len()
                        && pat.iter().rev().zip(name.iter().rev()).all(|(p, n)| p == n)
                });
                if let Some((_, i)) = hit {
                    let i = *i;
                    self.sql_arg(args.get(i).copied(), true);
                }
            }
        }
    }

    /// `CREATE FUNCTION/PROCEDURE` body: `LANGUAGE sql` bodies are judged as
    /// nested statements; `plpgsql` bodies contribute the statements that
    /// can be extracted (`EXECUTE 'literal'` is nested, `EXECUTE expr` is
    /// opaque); other languages are opaque.
    pub(super) fn function_body(
        &mut self,
        language: Option<&str>,
        body: Option<&CreateFunctionBody>,
    ) {
        let text = match body {
            Some(
                CreateFunctionBody::AsBeforeOptions { body: e, .. }
                | CreateFunctionBody::AsAfterOptions(e),
            ) => {
                let mut lit = false;
                fold::const_string(e, &mut lit)
            }
            // RETURN expr / BEGIN ATOMIC: visited as part of the AST.
            Some(_) => return,
            None => None,
        };
        let lang = language.unwrap_or("sql");
        let Some(text) = text else {
            if body.is_some() {
                self.opaque();
            }
            return;
        };
        match lang {
            "sql" => self.nested_sql(&text, false),
            "plpgsql" => self.plpgsql(&text),
            _ => self.opaque(),
        }
    }

    pub(super) fn plpgsql(&mut self, body: &str) {
        let (pieces, _) = lexer::split(body, Dialect::Postgres);
        for piece in pieces {
            let toks: Vec<lexer::Tok> = lexer::tokens(piece, Dialect::Postgres)
                .0
                .into_iter()
                .filter(|t| !matches!(t.kind, TokKind::Space | TokKind::Comment))
                .collect();
            let word = |t: &lexer::Tok| {
                if t.kind == TokKind::Word {
                    piece[t.start..t.end].to_ascii_uppercase()
                } else {
                    String::new()
                }
            };
            // EXECUTE anywhere in the piece (also RETURN QUERY EXECUTE, FOR ..
            // IN EXECUTE).
            if let Some(i) = toks.iter().position(|t| word(t) == "EXECUTE") {
                let start = toks.get(i + 1).map_or(piece.len(), |t| t.start);
                let end = toks[i + 1..]
                    .iter()
                    .find(|t| matches!(word(t).as_str(), "INTO" | "USING" | "LOOP"))
                    .map_or(piece.len(), |t| t.start);
                let expr_text = &piece[start..end.max(start)];
                let parsed =
                    Parser::parse_sql(&PostgreSqlDialect {}, &format!("SELECT {expr_text}"));
                let expr = match parsed.as_deref() {
                    Ok([Statement::Query(q)]) => match q.body.as_ref() {
                        SetExpr::Select(sel) if sel.projection.len() == 1 => {
                            match &sel.projection[0] {
                                SelectItem::UnnamedExpr(e) => Some(e.clone()),
                                _ => None,
                            }
                        }
                        _ => None,
                    },
                    _ => None,
                };
                match expr {
                    Some(e) => self.sql_arg(Some(&e), false),
                    None => self.opaque(),
                }
                continue;
            }
            // The SQL statement after block keywords.
            let mut i = 0;
            while i < toks.len() {
                let w = word(&toks[i]);
                if matches!(w.as_str(), "BEGIN" | "THEN" | "ELSE" | "LOOP" | "DECLARE") {
                    i += 1;
                    continue;
                }
                if w == "RETURN" && toks.get(i + 1).is_some_and(|t| word(t) == "QUERY") {
                    i += 2;
                    continue;
                }
                if let Some(j) = toks[i..]
                    .iter()
                    .rposition(|t| matches!(word(t).as_str(), "THEN" | "LOOP" | "ELSE"))
                {
                    if j > 0 {
                        i += j;
                        continue;
                    }
                }
                break;
            }
            let Some(first) = toks.get(i) else { continue };
            let w = word(first);
            let sql = &piece[first.start..];
            match w.as_str() {
                "PERFORM" => self.nested_sql(&format!("SELECT {}", &sql[7..]), false),
                "SELECT" | "WITH" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "TRUNCATE"
                | "DROP" | "ALTER" | "CREATE" | "GRANT" | "REVOKE" | "COPY" | "SET" | "RESET"
                | "CALL" | "DO" | "LOCK" | "COMMENT" | "REFRESH" | "VACUUM" | "DISCARD"
                | "NOTIFY" | "LISTEN" | "SECURITY" | "IMPORT" | "REASSIGN" => {
                    self.nested_sql(sql, false);
                }
                _ => {}
            }
        }
    }
}
