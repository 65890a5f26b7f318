//! The AST walk: every statement, query, table factor and expression the statement holds.

use super::*;

impl Visitor for Collector<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, st: &Statement) -> ControlFlow<()> {
        let output = self.stack.iter().all(|b| *b);
        let passes = matches!(st, Statement::Explain { .. } | Statement::Prepare { .. });
        self.stack.push(passes);
        self.out_stack
            .push(output && matches!(st, Statement::Query(_) | Statement::Declare { .. }));
        self.statement(st, output);
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _st: &Statement) -> ControlFlow<()> {
        self.stack.pop();
        self.out_stack.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        let addr = std::ptr::from_ref(q) as usize;
        let role = self
            .qroles
            .iter()
            .rposition(|(a, _)| *a == addr)
            .map(|i| self.qroles.swap_remove(i).1);
        let own = query_limit(q);
        let outer = self.qstack.last().copied();
        let bound = match (outer, role) {
            (None, _) | (Some(_), Some(QRole::Once)) => own,
            (Some(o), Some(QRole::PassThrough)) => match (own, o) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            // Expression subqueries, ARRAY(..), LATERAL: once per outer row.
            (Some(o), None) => times(own, o),
        };
        self.qstack.push(bound);
        // Children whose rows pass through this query's LIMIT.
        fn pass(e: &SetExpr, out: &mut Vec<(usize, QRole)>) {
            match e {
                SetExpr::Query(inner) => {
                    out.push((std::ptr::from_ref(&**inner) as usize, QRole::PassThrough))
                }
                SetExpr::SetOperation { left, right, .. } => {
                    pass(left, out);
                    pass(right, out);
                }
                _ => {}
            }
        }
        pass(&q.body, &mut self.qroles);
        if let Some(w) = &q.with {
            for c in &w.cte_tables {
                self.qroles
                    .push((std::ptr::from_ref(&*c.query) as usize, QRole::Once));
            }
        }
        self.set_expr_tables(&q.body, bound);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.qstack.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        if let Some(into) = &s.into {
            self.kinds(&[Kind::SelectInto, Kind::Create, Kind::CreateTable]);
            for t in &into.targets {
                match t {
                    Expr::Identifier(i) => self
                        .f
                        .tables_written
                        .push(vec![norm_ident(&i.value, i.quote_style.is_some())]),
                    Expr::CompoundIdentifier(parts) => self.f.tables_written.push(
                        parts
                            .iter()
                            .map(|i| norm_ident(&i.value, i.quote_style.is_some()))
                            .collect(),
                    ),
                    _ => {}
                }
            }
        }
        if s.projection.iter().any(|p| {
            matches!(
                p,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        }) {
            self.f.wildcard = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        match tf {
            TableFactor::Table {
                name,
                args: Some(a),
                ..
            } => {
                self.f.functions.push(norm_name(name));
                self.function_call_args(name, &a.args);
            }
            TableFactor::Function { name, args, .. } => {
                self.f.functions.push(norm_name(name));
                self.function_call_args(name, args);
            }
            TableFactor::Table { name, .. } => {
                let addr = std::ptr::from_ref(tf) as usize;
                if !self.write_factors.contains(&addr) {
                    let n = norm_name(name);
                    let b = self.current_bound();
                    self.record_read(n.clone(), b);
                    self.f.tables_read.push(n);
                }
            }
            TableFactor::Derived {
                lateral: false,
                subquery,
                ..
            } => {
                self.qroles
                    .push((std::ptr::from_ref(&**subquery) as usize, QRole::Once));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => {
                self.f.functions.push(norm_name(&f.name));
                self.function_call(f);
            }
            // MySQL `@user_variables` are not columns.
            Expr::Identifier(i) if !(self.mysql && i.value.starts_with('@')) => {
                self.f
                    .columns
                    .push(norm_ident(&i.value, i.quote_style.is_some()));
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(i) = parts.last() {
                    self.f
                        .columns
                        .push(norm_ident(&i.value, i.quote_style.is_some()));
                }
            }
            Expr::QualifiedWildcard(..) | Expr::Wildcard(..) => self.f.wildcard = true,
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
