//! Source columns of result fields. A RowDescription carries, for each field that is a plain
//! column reference, the table's OID and the column's number; column rules match the source,
//! so `select cvv as x from cards`, `select c.* from cards c` and a view over `cards.cvv` are
//! masked like `select cvv`. OIDs are resolved on a side connection to the same database
//! (the session's own database user, trust or peer authentication), cached per destination
//! and database for [`TTL`] and dropped when the session runs DDL. A view column resolves
//! through its rewrite rule to the table column it reads ([`view_origin`]).
//!
//! When a look-up fails (password authentication, a server that refuses), the field keeps
//! only its output name's rule; the failure is logged and counted.

mod client;
pub mod view_origin;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbwarden_wire_pg::RowDescription;

use crate::destination::Destination;

/// How long resolved OIDs are trusted (a table dropped and re-created gets a new OID; a
/// column renamed keeps its number, so the cache is also dropped on DDL).
pub const TTL: Duration = Duration::from_secs(30);
/// Views over views are followed this deep.
const MAX_VIEW_DEPTH: usize = 4;
/// Relations cached per database.
const MAX_RELATIONS: usize = 10_000;

/// The table column a result field comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColumn {
    /// Schema.
    pub schema: String,
    /// Table (or view, when the view column is an expression).
    pub table: String,
    /// Column.
    pub column: String,
}

#[derive(Debug, Clone)]
struct Relation {
    schema: String,
    name: String,
    /// Column number → name.
    columns: HashMap<i16, String>,
    /// For a view: its column number → the (relation, column) it reads.
    origins: HashMap<i16, (u32, i16)>,
}

#[derive(Default)]
struct DbCache {
    fetched: Option<Instant>,
    relations: HashMap<u32, Arc<Relation>>,
    /// The last look-up failed then: no new attempt for [`TTL`] (a server that wants a
    /// password would otherwise cost a connection per new result shape).
    failed: Option<Instant>,
}

/// The per-daemon cache of resolved relations.
#[derive(Default)]
pub struct Catalog {
    dbs: Mutex<HashMap<(String, String), DbCache>>,
}

fn key(dst: &Destination, db: &str) -> (String, String) {
    (dst.to_string(), db.to_owned())
}

impl Catalog {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), DbCache>> {
        self.dbs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets what is known of `db` (the session changed the schema).
    pub fn invalidate(&self, dst: &Destination, db: &str) {
        self.lock().remove(&key(dst, db));
    }

    /// The relations of `desc` not yet known (none: [`Catalog::sources`] can answer now).
    pub fn missing(&self, dst: &Destination, db: &str, desc: &RowDescription) -> Vec<u32> {
        let mut dbs = self.lock();
        let c = dbs.entry(key(dst, db)).or_default();
        if c.fetched.is_some_and(|t| t.elapsed() > TTL) {
            let failed = c.failed;
            *c = DbCache::default();
            c.failed = failed;
        }
        if c.failed.is_some_and(|t| t.elapsed() < TTL) {
            return Vec::new();
        }
        let mut want: Vec<u32> = Vec::new();
        for f in &desc.fields {
            if f.table_oid != 0 && !c.relations.contains_key(&f.table_oid) {
                want.push(f.table_oid);
            }
        }
        want.sort_unstable();
        want.dedup();
        want
    }

    /// Remembers that a look-up in `db` failed: none is tried again for [`TTL`].
    pub fn note_failure(&self, dst: &Destination, db: &str) {
        self.lock().entry(key(dst, db)).or_default().failed = Some(Instant::now());
    }

    /// Fetches `oids` (and the relations their views read) on a side connection.
    ///
    /// # Errors
    /// The look-up failed; nothing is cached.
    pub async fn fetch(
        &self,
        dst: &Destination,
        db: &str,
        user: &str,
        oids: Vec<u32>,
        timeout: Duration,
    ) -> Result<(), String> {
        let mut want = oids;
        let mut seen: HashSet<u32> = HashSet::new();
        for _ in 0..MAX_VIEW_DEPTH {
            want.retain(|o| seen.insert(*o));
            if want.is_empty() {
                break;
            }
            let fetched = tokio::time::timeout(timeout, fetch_relations(dst, db, user, &want))
                .await
                .map_err(|_| "catalog look-up timed out".to_string())??;
            let mut next: Vec<u32> = Vec::new();
            for rel in fetched.values() {
                next.extend(rel.origins.values().map(|(t, _)| *t));
            }
            {
                let mut dbs = self.lock();
                let c = dbs.entry(key(dst, db)).or_default();
                c.fetched.get_or_insert_with(Instant::now);
                if c.relations.len() + fetched.len() > MAX_RELATIONS {
                    c.relations.clear();
                }
                for (oid, rel) in fetched {
                    c.relations.insert(oid, Arc::new(rel));
                }
                next.retain(|o| !c.relations.contains_key(o));
            }
            want = next;
        }
        Ok(())
    }

    /// The source column of each field of `desc`, from what is cached (`None`: not a column
    /// reference, or unknown).
    pub fn sources(
        &self,
        dst: &Destination,
        db: &str,
        desc: &RowDescription,
    ) -> Vec<Option<SourceColumn>> {
        let dbs = self.lock();
        let Some(c) = dbs.get(&key(dst, db)) else {
            return vec![None; desc.fields.len()];
        };
        desc.fields
            .iter()
            .map(|f| resolve(&c.relations, f.table_oid, f.column_attr, 0))
            .collect()
    }
}

/// Whether a command tag says the schema may have changed (columns renamed, tables
/// re-created, views replaced).
pub fn changes_schema(tag: &str) -> bool {
    ["ALTER", "CREATE", "DROP", "COMMENT"]
        .iter()
        .any(|p| tag.starts_with(p))
}

/// The source columns of `desc`'s fields for the session `info`, looking up what the cache
/// does not know yet. A failed look-up leaves the fields without sources (name rules only),
/// logged and counted.
pub async fn sources_for(
    shared: &crate::server::Shared,
    info: &tokio::sync::RwLock<crate::pipeline::SessionInfo>,
    desc: &RowDescription,
) -> Vec<Option<SourceColumn>> {
    if desc.fields.iter().all(|f| f.table_oid == 0) {
        return Vec::new();
    }
    let (dst, db, user) = {
        let i = info.read().await;
        (
            i.ident.original_dst.clone(),
            i.database.clone().unwrap_or_default(),
            i.db_user.clone().unwrap_or_default(),
        )
    };
    let cat = &shared.catalog;
    let missing = cat.missing(&dst, &db, desc);
    if !missing.is_empty() {
        if let Err(e) = cat
            .fetch(&dst, &db, &user, missing, shared.settings.connect_timeout)
            .await
        {
            tracing::warn!(error = %e, "source columns unknown: only column-name rules apply (no new look-up in this database for 30 s)");
            crate::metrics::Metrics::inc(&shared.metrics.catalog_failures_total);
            cat.note_failure(&dst, &db);
        }
    }
    cat.sources(&dst, &db, desc)
}

/// Follows views down to the table column.
fn resolve(
    rels: &HashMap<u32, Arc<Relation>>,
    oid: u32,
    attnum: i16,
    depth: usize,
) -> Option<SourceColumn> {
    let rel = rels.get(&oid)?;
    if depth < MAX_VIEW_DEPTH {
        if let Some((t, c)) = rel.origins.get(&attnum) {
            if let Some(s) = resolve(rels, *t, *c, depth + 1) {
                return Some(s);
            }
        }
    }
    Some(SourceColumn {
        schema: rel.schema.clone(),
        table: rel.name.clone(),
        column: rel.columns.get(&attnum)?.clone(),
    })
}

async fn fetch_relations(
    dst: &Destination,
    db: &str,
    user: &str,
    oids: &[u32],
) -> Result<HashMap<u32, Relation>, String> {
    // OIDs are integers from the server's own RowDescription: safe to inline.
    let list = oids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "SELECT c.oid::text, n.nspname, c.relname, a.attnum::text, a.attname, NULL \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         WHERE c.oid IN ({list}); \
         SELECT r.ev_class::text, NULL, NULL, NULL, NULL, r.ev_action::text \
         FROM pg_catalog.pg_rewrite r WHERE r.rulename = '_RETURN' AND r.ev_class IN ({list})"
    );
    let stream = crate::session::upstream::connect(dst, Duration::from_secs(5))
        .await
        .map_err(|e| format!("catalog connection failed: {e}"))?;
    let rows = client::query(stream, user, db, &sql).await?;
    let mut rels: HashMap<u32, Relation> = HashMap::new();
    for r in rows {
        let [Some(oid), schema, name, attnum, attname, action] = <[Option<String>; 6]>::try_from(r)
            .map_err(|_| "unexpected catalog answer".to_string())?
        else {
            continue;
        };
        let Ok(oid) = oid.parse::<u32>() else {
            continue;
        };
        if let Some(action) = action {
            if let Some(rel) = rels.get_mut(&oid) {
                for o in view_origin::origins(&action) {
                    rel.origins.insert(o.attnum, (o.table, o.column));
                }
            }
            continue;
        }
        let rel = rels.entry(oid).or_insert_with(|| Relation {
            schema: schema.unwrap_or_default(),
            name: name.unwrap_or_default(),
            columns: HashMap::new(),
            origins: HashMap::new(),
        });
        if let (Some(n), Some(a)) = (attnum.and_then(|a| a.parse::<i16>().ok()), attname) {
            rel.columns.insert(n, a);
        }
    }
    Ok(rels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbwarden_wire_pg::{FieldDescription, Format};

    #[test]
    fn a_failed_look_up_is_not_retried_at_once() {
        let c = Catalog::default();
        let dst = Destination::Tcp("127.0.0.1:5432".parse().unwrap());
        let desc = RowDescription {
            fields: vec![FieldDescription {
                name: "x".into(),
                table_oid: 16384,
                column_attr: 2,
                type_oid: 25,
                type_len: -1,
                type_mod: -1,
                format: Format::Text,
            }],
        };
        assert_eq!(c.missing(&dst, "db", &desc), vec![16384]);
        c.note_failure(&dst, "db");
        assert!(c.missing(&dst, "db", &desc).is_empty());
        assert_eq!(c.missing(&dst, "other", &desc), vec![16384]);
        assert_eq!(c.sources(&dst, "db", &desc), vec![None]);
        c.invalidate(&dst, "db");
        assert_eq!(c.missing(&dst, "db", &desc), vec![16384]);
    }
}
