//! Statement kinds: the vocabulary of the `kind` matcher.
//!
//! One statement can carry several kinds (a CTE holding a `DELETE` is both
//! `select` and `delete`; `CREATE EXTENSION` is both `create` and
//! `create_extension`). Kinds are stored as a 64-bit set so that matching is a
//! single AND. Group names (`dml`, `ddl`, `copy`, ...) expand to several kinds
//! when the policy is compiled.

use std::fmt;

macro_rules! kinds {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// A statement kind. The TOML spelling is the snake_case name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Kind { $(#[doc = $doc] $variant,)* }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The policy-file spelling of this kind.
            #[must_use]
            pub fn name(self) -> &'static str {
                match self { $(Kind::$variant => $name,)* }
            }

            /// Looks a kind up by its policy-file spelling.
            #[must_use]
            pub fn from_name(s: &str) -> Option<Kind> {
                match s { $($name => Some(Kind::$variant),)* _ => None }
            }
        }
    };
}

kinds! {
    Select => "select", "`SELECT`, `VALUES`, `(TABLE t)`, and `DECLARE .. CURSOR FOR SELECT`.";
    Insert => "insert", "`INSERT` (and MySQL `REPLACE`).";
    Update => "update", "`UPDATE`.";
    Delete => "delete", "`DELETE`.";
    Merge => "merge", "`MERGE`.";
    SelectInto => "select_into", "`SELECT .. INTO new_table` (creates a table).";
    Create => "create", "Any `CREATE ..`.";
    CreateTable => "create_table", "`CREATE TABLE` (including `CREATE TABLE AS`).";
    CreateView => "create_view", "`CREATE [MATERIALIZED] VIEW`.";
    CreateIndex => "create_index", "`CREATE INDEX`.";
    CreateFunction => "create_function", "`CREATE FUNCTION` / `CREATE PROCEDURE`.";
    CreateExtension => "create_extension", "`CREATE EXTENSION`.";
    CreateRole => "create_role", "`CREATE ROLE` / `CREATE USER`.";
    CreateTrigger => "create_trigger", "`CREATE TRIGGER` / `CREATE RULE`.";
    Alter => "alter", "Any `ALTER ..`.";
    AlterTable => "alter_table", "`ALTER TABLE`.";
    AlterDrop => "alter_drop", "`ALTER TABLE .. DROP ..` (column, constraint, partition...).";
    AlterSystem => "alter_system", "`ALTER SYSTEM` (Postgres server configuration).";
    AlterRole => "alter_role", "`ALTER ROLE` / `ALTER USER`.";
    RolePrivilege => "role_privilege", "`CREATE/ALTER ROLE/USER` that does more than set a password or its validity (attributes such as SUPERUSER, memberships, renames, per-role settings).";
    Drop => "drop", "Any `DROP ..`.";
    DropIndex => "drop_index", "`DROP INDEX` (comes with `drop`).";
    DropDestructive => "drop_destructive", "Any `DROP` except `DROP INDEX`: drops data, code, roles or privileges (comes with `drop`).";
    Truncate => "truncate", "`TRUNCATE`.";
    Rename => "rename", "`RENAME TABLE` (MySQL) and `ALTER .. RENAME`.";
    Comment => "comment", "`COMMENT ON`.";
    Grant => "grant", "`GRANT`.";
    Revoke => "revoke", "`REVOKE`.";
    CopyToStdout => "copy_to_stdout", "`COPY .. TO STDOUT` (bulk export to the client).";
    CopyFromStdin => "copy_from_stdin", "`COPY .. FROM STDIN` (bulk import from the client).";
    CopyToFile => "copy_to_file", "`COPY .. TO 'server file'`.";
    CopyFromFile => "copy_from_file", "`COPY .. FROM 'server file'`.";
    CopyToProgram => "copy_to_program", "`COPY .. TO PROGRAM` (runs a server command).";
    CopyFromProgram => "copy_from_program", "`COPY .. FROM PROGRAM` (runs a server command).";
    LoadDataInfile => "load_data_infile", "MySQL `LOAD DATA INFILE` (server file).";
    LoadDataLocalInfile => "load_data_local_infile", "MySQL `LOAD DATA LOCAL INFILE` (client file).";
    SelectIntoOutfile => "select_into_outfile", "MySQL `SELECT .. INTO OUTFILE/DUMPFILE`.";
    Set => "set", "`SET` of a session/global variable.";
    SetRole => "set_role", "Any change of the current role or session user: `SET [LOCAL|SESSION] ROLE`, `SET role = ..`/`TO ..`, `SET SESSION AUTHORIZATION`, `RESET ROLE`, `RESET SESSION AUTHORIZATION`, `DISCARD ALL`, `set_config('role'|'session_authorization', ..)` anywhere in an expression.";
    Reset => "reset", "`RESET`.";
    Show => "show", "`SHOW ..`, `DESCRIBE`.";
    Use => "use", "`USE db`.";
    Call => "call", "`CALL procedure(..)` (opaque: its body is not visible).";
    Do => "do", "`DO` block (opaque code).";
    Execute => "execute", "SQL-level `EXECUTE` of a prepared statement.";
    Prepare => "prepare", "SQL-level `PREPARE` (the prepared statement is judged too).";
    DynamicSql => "dynamic_sql", "Dynamic SQL whose text is not visible: MySQL `PREPARE s FROM @var`, `EXECUTE IMMEDIATE`.";
    Deallocate => "deallocate", "`DEALLOCATE`.";
    Begin => "begin", "`BEGIN` / `START TRANSACTION`.";
    Commit => "commit", "`COMMIT`.";
    Rollback => "rollback", "`ROLLBACK`.";
    Savepoint => "savepoint", "`SAVEPOINT` / `RELEASE SAVEPOINT`.";
    Explain => "explain", "`EXPLAIN` (the explained statement is judged too).";
    ExplainAnalyze => "explain_analyze", "`EXPLAIN ANALYZE` (executes the statement).";
    Lock => "lock", "`LOCK TABLE(S)`, `UNLOCK TABLES`.";
    Maintenance => "maintenance", "`VACUUM`, `ANALYZE`, `OPTIMIZE`, `REFRESH MATERIALIZED VIEW`.";
    Listen => "listen", "`LISTEN` / `UNLISTEN`.";
    Notify => "notify", "`NOTIFY`.";
    Cursor => "cursor", "`DECLARE` / `FETCH` / `CLOSE` cursor.";
    Discard => "discard", "`DISCARD`.";
    Other => "other", "Any statement without a more specific kind.";
}

/// Group names usable in `kind = [..]` and what they expand to.
pub const GROUPS: &[(&str, &[Kind])] = &[
    (
        "dml",
        &[Kind::Insert, Kind::Update, Kind::Delete, Kind::Merge],
    ),
    (
        "ddl",
        &[
            Kind::Create,
            Kind::Alter,
            Kind::Drop,
            Kind::Truncate,
            Kind::Rename,
            Kind::Comment,
        ],
    ),
    (
        "copy",
        &[
            Kind::CopyToStdout,
            Kind::CopyFromStdin,
            Kind::CopyToFile,
            Kind::CopyFromFile,
            Kind::CopyToProgram,
            Kind::CopyFromProgram,
        ],
    ),
    (
        "file_access",
        &[
            Kind::CopyToFile,
            Kind::CopyFromFile,
            Kind::CopyToProgram,
            Kind::CopyFromProgram,
            Kind::LoadDataInfile,
            Kind::LoadDataLocalInfile,
            Kind::SelectIntoOutfile,
        ],
    ),
    (
        "transaction",
        &[Kind::Begin, Kind::Commit, Kind::Rollback, Kind::Savepoint],
    ),
    ("opaque", &[Kind::Do, Kind::Call, Kind::DynamicSql]),
    (
        "write",
        &[
            Kind::Insert,
            Kind::Update,
            Kind::Delete,
            Kind::Merge,
            Kind::SelectInto,
            Kind::Create,
            Kind::Alter,
            Kind::Drop,
            Kind::Truncate,
            Kind::Rename,
            Kind::Comment,
            Kind::Grant,
            Kind::Revoke,
            Kind::CopyFromStdin,
            Kind::CopyFromFile,
            Kind::CopyFromProgram,
            Kind::LoadDataInfile,
            Kind::LoadDataLocalInfile,
            Kind::SelectIntoOutfile,
            Kind::CopyToFile,
            Kind::CopyToProgram,
            Kind::Maintenance,
            Kind::Lock,
            Kind::Notify,
        ],
    ),
];

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of kinds (bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct KindSet(u64);

impl KindSet {
    /// The empty set.
    pub const EMPTY: KindSet = KindSet(0);

    /// Adds `k`.
    pub fn insert(&mut self, k: Kind) {
        self.0 |= 1u64 << (k as u8);
    }

    /// Whether `k` is in the set.
    #[must_use]
    pub fn contains(self, k: Kind) -> bool {
        self.0 & (1u64 << (k as u8)) != 0
    }

    /// Whether the two sets share a kind.
    #[must_use]
    pub fn intersects(self, other: KindSet) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL.iter().copied().filter(move |k| self.contains(*k))
    }

    /// Parses a kind or group name into the set it stands for.
    #[must_use]
    pub fn from_name(s: &str) -> Option<KindSet> {
        let mut set = KindSet::EMPTY;
        if s == "all" {
            for k in Kind::ALL {
                set.insert(*k);
            }
            return Some(set);
        }
        if let Some(k) = Kind::from_name(s) {
            set.insert(k);
            return Some(set);
        }
        let (_, members) = GROUPS.iter().find(|(g, _)| *g == s)?;
        for k in *members {
            set.insert(*k);
        }
        Some(set)
    }
}

impl FromIterator<Kind> for KindSet {
    fn from_iter<I: IntoIterator<Item = Kind>>(iter: I) -> Self {
        let mut s = KindSet::EMPTY;
        for k in iter {
            s.insert(k);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_in_u64_and_round_trips() {
        assert!(Kind::ALL.len() <= 64);
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(*k));
        }
    }

    #[test]
    fn groups_expand() {
        let dml = KindSet::from_name("dml").unwrap();
        assert!(dml.contains(Kind::Delete));
        assert!(!dml.contains(Kind::Select));
        assert!(KindSet::from_name("all").unwrap().contains(Kind::Other));
        assert_eq!(KindSet::from_name("nonsense"), None);
        let s: KindSet = [Kind::Select, Kind::Delete].into_iter().collect();
        assert!(s.intersects(dml));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Kind::Select, Kind::Delete]
        );
    }
}
