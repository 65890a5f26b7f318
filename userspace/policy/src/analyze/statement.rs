//! Facts of each statement type (the big match over `sqlparser`'s `Statement`), `SET`
//! and `ALTER` details.

use super::*;

impl Collector<'_> {
    /// Records the facts of `st` itself. `output`: its query result goes to
    /// the client (no enclosing statement other than EXPLAIN/PREPARE).
    pub(super) fn statement(&mut self, st: &Statement, output: bool) {
        match st {
            Statement::Query(q) => {
                self.kind(Kind::Select);
                if output {
                    self.output_limit(q);
                }
            }
            Statement::Insert(i) => {
                self.kind(Kind::Insert);
                if let TableObject::TableName(n) = &i.table {
                    self.written(n);
                }
            }
            Statement::Update(u) => {
                self.kind(Kind::Update);
                self.write_factor(&u.table.relation);
                if self.where_less(u.selection.as_ref()) {
                    self.f.where_less = true;
                }
            }
            Statement::Delete(d) => {
                self.kind(Kind::Delete);
                if d.tables.is_empty() {
                    let from = match &d.from {
                        FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => v,
                    };
                    for twj in from {
                        self.write_factor(&twj.relation);
                    }
                } else {
                    for n in &d.tables {
                        self.written(n);
                    }
                }
                if self.where_less(d.selection.as_ref()) {
                    self.f.where_less = true;
                }
            }
            Statement::Merge(m) => {
                self.kind(Kind::Merge);
                self.write_factor(&m.table);
            }
            Statement::CreateTable(ct) => {
                self.kinds(&[Kind::CreateTable, Kind::Create]);
                self.written(&ct.name);
            }
            Statement::CreateView(cv) => {
                self.kinds(&[Kind::CreateView, Kind::Create]);
                self.written(&cv.name);
            }
            Statement::CreateIndex(ci) => {
                self.kinds(&[Kind::CreateIndex, Kind::Create]);
                self.written(&ci.table_name);
            }
            Statement::CreateFunction(cf) => {
                self.kinds(&[Kind::CreateFunction, Kind::Create]);
                self.f.language = cf.language.as_ref().map(|l| l.value.to_lowercase());
                // `LANGUAGE 'c'` may be a string literal: do not share this
                // analysis with other literal values.
                self.cacheable = false;
                let lang = self.f.language.clone();
                self.function_body(lang.as_deref(), cf.function_body.as_ref());
            }
            Statement::CreateProcedure { language, .. } => {
                self.kinds(&[Kind::CreateFunction, Kind::Create]);
                self.f.language = language.as_ref().map(|l| l.value.to_lowercase());
                self.cacheable = false;
                if !matches!(self.f.language.as_deref(), None | Some("sql")) {
                    self.opaque();
                }
            }
            Statement::CreateExtension(_) => self.kinds(&[Kind::CreateExtension, Kind::Create]),
            Statement::CreateRole(r) => {
                self.kinds(&[Kind::CreateRole, Kind::Create]);
                let no = |b: Option<bool>| b != Some(true);
                let credential_only = r.password.is_some()
                    && no(r.superuser)
                    && no(r.create_db)
                    && no(r.create_role)
                    && no(r.replication)
                    && no(r.bypassrls)
                    && r.in_role.is_empty()
                    && r.in_group.is_empty()
                    && r.role.is_empty()
                    && r.user.is_empty()
                    && r.admin.is_empty()
                    && r.authorization_owner.is_none();
                if !credential_only {
                    self.kind(Kind::RolePrivilege);
                }
            }
            Statement::CreateUser(_) => {
                self.kinds(&[Kind::CreateRole, Kind::Create, Kind::RolePrivilege]);
            }
            Statement::CreateTrigger(_) | Statement::CreateRule(_) => {
                self.kinds(&[Kind::CreateTrigger, Kind::Create]);
            }
            Statement::AlterTable(at) => {
                self.kinds(&[Kind::AlterTable, Kind::Alter]);
                self.written(&at.name);
                for op in &at.operations {
                    self.alter_op(op);
                }
            }
            Statement::AlterRole { operation, .. } => {
                self.kinds(&[Kind::AlterRole, Kind::Alter]);
                let credential_only = matches!(operation, AlterRoleOperation::WithOptions { options }
                    if options.iter().any(|o| matches!(o, RoleOption::Password(_)))
                        && options.iter().all(|o| matches!(o, RoleOption::Password(_) | RoleOption::ValidUntil(_))));
                if !credential_only {
                    self.kind(Kind::RolePrivilege);
                }
            }
            Statement::AlterUser(_) => {
                self.kinds(&[Kind::AlterRole, Kind::Alter, Kind::RolePrivilege]);
            }
            Statement::Drop {
                names, object_type, ..
            } => {
                self.kind(Kind::Drop);
                if *object_type == ObjectType::Index {
                    self.kind(Kind::DropIndex);
                } else {
                    self.kind(Kind::DropDestructive);
                }
                for n in names {
                    self.written(n);
                }
            }
            Statement::Truncate(t) => {
                self.kind(Kind::Truncate);
                for n in &t.table_names {
                    self.written(&n.name);
                }
            }
            Statement::RenameTable(rs) => {
                self.kind(Kind::Rename);
                for r in rs {
                    self.written(&r.old_name);
                    self.written(&r.new_name);
                }
            }
            Statement::Comment { .. } => self.kind(Kind::Comment),
            Statement::Grant(_)
            | Statement::GrantRole(_)
            | Statement::AlterDefaultPrivileges(_) => {
                self.kind(Kind::Grant);
            }
            Statement::Revoke(_) | Statement::RevokeRole(_) | Statement::Deny(_) => {
                self.kind(Kind::Revoke);
            }
            Statement::Copy {
                source, to, target, ..
            } => {
                if self.stack.len() == 1 {
                    // Options are literals: the normalised text would share one analysis
                    // between `DELIMITER ','` and `DELIMITER ';'`.
                    self.f.copy_out = crate::copy::copy_out(st);
                    self.cacheable = false;
                }
                let k = match (target, *to) {
                    (CopyTarget::Stdout, _) => Kind::CopyToStdout,
                    (CopyTarget::Stdin, _) => Kind::CopyFromStdin,
                    (CopyTarget::File { .. }, true) => Kind::CopyToFile,
                    (CopyTarget::File { .. }, false) => Kind::CopyFromFile,
                    (CopyTarget::Program { .. }, true) => Kind::CopyToProgram,
                    (CopyTarget::Program { .. }, false) => Kind::CopyFromProgram,
                };
                self.kind(k);
                if let CopySource::Table {
                    table_name,
                    columns,
                } = source
                {
                    if *to {
                        self.f.tables_read.push(norm_name(table_name));
                        if columns.is_empty() {
                            self.f.wildcard = true;
                        }
                        for c in columns {
                            self.f
                                .columns
                                .push(norm_ident(&c.value, c.quote_style.is_some()));
                        }
                    } else {
                        self.written(table_name);
                    }
                }
            }
            Statement::LoadData {
                local, table_name, ..
            } => {
                self.kind(if *local {
                    Kind::LoadDataLocalInfile
                } else {
                    Kind::LoadDataInfile
                });
                self.kind(Kind::Insert);
                self.written(table_name);
            }
            Statement::Set(s) => self.set(s),
            Statement::Reset(r) => {
                self.kind(Kind::Reset);
                match &r.reset {
                    Reset::SessionAuthorization => {
                        self.kind(Kind::SetRole);
                        self.f.settings.push("session_authorization".to_owned());
                    }
                    Reset::ConfigurationParameter(n) => self.setting(n),
                    Reset::ALL => self.f.settings.push("all".to_owned()),
                }
            }
            Statement::Use(_) => self.kind(Kind::Use),
            Statement::ExplainTable { .. } => self.kind(Kind::Show),
            Statement::Call(f) => {
                self.kind(Kind::Call);
                self.f.functions.push(norm_name(&f.name));
            }
            Statement::Execute { immediate, .. } => {
                self.kind(Kind::Execute);
                if *immediate {
                    self.kind(Kind::DynamicSql);
                }
            }
            Statement::Prepare { .. } => self.kind(Kind::Prepare),
            Statement::Deallocate { .. } => self.kind(Kind::Deallocate),
            Statement::StartTransaction { .. } => self.kind(Kind::Begin),
            Statement::Commit { .. } => self.kind(Kind::Commit),
            Statement::Rollback { .. } => self.kind(Kind::Rollback),
            Statement::Savepoint { .. } | Statement::ReleaseSavepoint { .. } => {
                self.kind(Kind::Savepoint);
            }
            Statement::Explain { analyze, .. } => {
                self.kind(Kind::Explain);
                if *analyze {
                    self.kind(Kind::ExplainAnalyze);
                }
            }
            Statement::Lock(_) | Statement::LockTables { .. } | Statement::UnlockTables => {
                self.kind(Kind::Lock);
            }
            Statement::Vacuum(_)
            | Statement::Analyze(_)
            | Statement::OptimizeTable { .. }
            | Statement::RefreshMaterializedView(_) => self.kind(Kind::Maintenance),
            Statement::LISTEN { .. } | Statement::UNLISTEN { .. } => self.kind(Kind::Listen),
            Statement::NOTIFY { .. } => self.kind(Kind::Notify),
            Statement::Declare { stmts, .. } => {
                self.kind(Kind::Cursor);
                // A cursor's rows reach the client through FETCH: judge its
                // query like a SELECT (kind and row limit).
                for d in stmts {
                    if let Some(q) = &d.for_query {
                        self.kind(Kind::Select);
                        if output {
                            self.output_limit(q);
                        }
                    }
                }
            }
            Statement::Fetch { .. } | Statement::Close { .. } => self.kind(Kind::Cursor),
            Statement::Discard { object_type } => {
                self.kind(Kind::Discard);
                // DISCARD ALL includes SET SESSION AUTHORIZATION DEFAULT.
                if matches!(object_type, sqlparser::ast::DiscardObject::ALL) {
                    self.kind(Kind::SetRole);
                    self.f.settings.push("session_authorization".to_owned());
                    // ... and RESET ALL.
                    self.f.settings.push("all".to_owned());
                }
            }
            other => self.by_variant_name(other),
        }
    }

    /// Records the row limit of a query whose rows go to the client.
    pub(super) fn output_limit(&mut self, q: &Query) {
        match query_limit(q) {
            Some(n) => self.f.limit = Some(self.f.limit.map_or(n, |m| m.max(n))),
            None => self.f.no_limit = true,
        }
    }

    /// `TABLE name` (a query body that is not a `TableFactor`), also inside
    /// set operations.
    pub(super) fn set_expr_tables(&mut self, e: &SetExpr, bound: Option<u64>) {
        match e {
            SetExpr::Table(t) => {
                if let Some(name) = &t.table_name {
                    let mut n = Vec::new();
                    if let Some(schema) = &t.schema_name {
                        n.push(norm_ident(&schema.value, schema.quote_style.is_some()));
                    }
                    n.push(norm_ident(&name.value, name.quote_style.is_some()));
                    self.record_read(n.clone(), bound);
                    self.f.tables_read.push(n);
                    self.f.wildcard = true;
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr_tables(left, bound);
                self.set_expr_tables(right, bound);
            }
            _ => {}
        }
    }

    /// Classifies the long tail of statements by their variant name
    /// (`CreateSchema`, `AlterIndex`, `DropFunction`, `ShowTables`, ...).
    pub(super) fn by_variant_name(&mut self, st: &Statement) {
        let dbg = format!("{st:?}");
        let name: String = dbg
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        let k = if name.starts_with("Create") {
            Kind::Create
        } else if name.starts_with("Alter") {
            Kind::Alter
        } else if name.starts_with("Drop") {
            self.kind(Kind::DropDestructive);
            Kind::Drop
        } else if name.starts_with("Show") {
            Kind::Show
        } else {
            Kind::Other
        };
        self.kind(k);
    }

    pub(super) fn alter_op(&mut self, op: &AlterTableOperation) {
        let dbg = format!("{op:?}");
        if dbg.starts_with("Drop") {
            self.kind(Kind::AlterDrop);
        } else if dbg.starts_with("Rename") {
            self.kind(Kind::Rename);
        }
    }

    /// `SET client_encoding` / `SET NAMES` to an encoding whose characters can end in a quote
    /// or backslash byte ([`crate::encoding`]) is recorded for the engine, which refuses it
    /// unless the policy allows it; a value dbwarden cannot read is refused here.
    pub(super) fn client_encoding(&mut self, value: Option<&Expr>) {
        let name = match value {
            Some(Expr::Identifier(i)) => Some(i.value.clone()),
            Some(e) => {
                let mut lit = false;
                fold::const_string(e, &mut lit)
            }
            None => None,
        };
        match name {
            Some(n) if !crate::encoding::unsafe_client_encoding(&n) => {}
            // Judged by the engine: the policy may allow it.
            Some(n) => self.f.unsafe_encoding = Some(n),
            None => {
                self.f.parse_error = Some(
                    "dbwarden: SET client_encoding to a value dbwarden cannot read is refused"
                        .to_owned(),
                )
            }
        }
        self.cacheable = false;
    }

    pub(super) fn set(&mut self, s: &Set) {
        self.kind(Kind::Set);
        match s {
            Set::SingleAssignment {
                variable, values, ..
            } => {
                self.setting(variable);
                // GUC names are case-insensitive, quoted or not (as in `setting`).
                let name = norm_name(variable);
                let last = name.last().map(|l| l.to_lowercase());
                if name.len() == 1 && matches!(last.as_deref(), Some("client_encoding" | "names")) {
                    self.client_encoding(values.first());
                }
            }
            Set::SetNames { charset_name, .. } => {
                self.f.settings.push("names".to_owned());
                self.client_encoding(Some(&Expr::Identifier(charset_name.clone())));
            }
            Set::ParenthesizedAssignments { variables, .. } => {
                for v in variables {
                    self.setting(v);
                }
            }
            Set::MultipleAssignments { assignments } => {
                for a in assignments {
                    self.setting(&a.name);
                }
            }
            Set::SetRole { .. } => {
                self.kind(Kind::SetRole);
                self.f.settings.push("role".to_owned());
            }
            Set::SetSessionAuthorization(_) => {
                self.kind(Kind::SetRole);
                self.f.settings.push("session_authorization".to_owned());
            }
            other => {
                // SET TIME ZONE, SET NAMES, SET TRANSACTION, ...: record the
                // variant as a snake_case setting name.
                let dbg = format!("{other:?}");
                let variant: String = dbg
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                let mut name = String::new();
                for (i, c) in variant.trim_start_matches("Set").chars().enumerate() {
                    if c.is_ascii_uppercase() && i > 0 {
                        name.push('_');
                    }
                    name.push(c.to_ascii_lowercase());
                }
                self.f.settings.push(name);
            }
        }
    }
}
