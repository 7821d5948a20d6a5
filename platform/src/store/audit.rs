//! The append-only audit log of metadata changes, record writes and sign-in events.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend};
use sea_query::{Expr, ExprTrait, Order, Query};

use super::{
    Store, StoreResult,
    codec::{Storage, decode},
    writes::insert_many,
};

/// One audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: String,
    pub at: DateTime<Utc>,
    pub actor_id: Option<String>,
    /// `metadata`, `record` or `auth`.
    pub category: String,
    pub action: String,
    pub object: Option<String>,
    pub record_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl AuditEntry {
    pub fn new(category: &str, action: &str, actor_id: Option<&str>) -> AuditEntry {
        AuditEntry {
            id: uuid::Uuid::now_v7().to_string(),
            at: Utc::now(),
            actor_id: actor_id.map(str::to_string),
            category: category.into(),
            action: action.into(),
            object: None,
            record_id: None,
            before: None,
            after: None,
        }
    }

    pub fn on(mut self, object: &str, record_id: Option<&str>) -> AuditEntry {
        self.object = Some(object.to_string());
        self.record_id = record_id.map(str::to_string);
        self
    }

    /// The entry without its images (which `append` writes as text).
    fn header(&self) -> AuditEntry {
        AuditEntry {
            id: self.id.clone(),
            at: self.at,
            actor_id: self.actor_id.clone(),
            category: self.category.clone(),
            action: self.action.clone(),
            object: self.object.clone(),
            record_id: self.record_id.clone(),
            before: None,
            after: None,
        }
    }

    pub fn images(mut self, before: Option<serde_json::Value>, after: Option<serde_json::Value>) -> AuditEntry {
        self.before = before;
        self.after = after;
        self
    }
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub category: Option<String>,
    pub object: Option<String>,
    pub record_id: Option<String>,
    pub actor_id: Option<String>,
    /// Only entries older than this entry id (the previous page's last id).
    pub before_id: Option<String>,
    pub limit: u64,
}

const COLUMNS: [&str; 9] =
    ["id", "at", "actor_id", "category", "action", "object", "record_id", "before_image", "after_image"];

/// Appends entries, many rows per statement. Runs inside the caller's transaction, which must
/// be rolled back if this fails (see `insert_many`).
pub async fn append<C: ConnectionTrait>(conn: &C, entries: &[AuditEntry], backend: DbBackend) -> StoreResult<()> {
    let text = |image: &Option<serde_json::Value>| image.as_ref().map(|j| j.to_string());
    append_rows(conn, entries.iter().map(|e| (e.header(), text(&e.before), text(&e.after))).collect(), backend).await
}

/// `append` for entries whose images are given as JSON text, `(entry, before, after)` (the
/// entries' own images are not written): a batch of creates serialises its images before it
/// takes the writer lock, so that little but the entries' ids (which follow the order of
/// commits) is made while other writers wait. The entries move into the statement.
pub(super) async fn append_rows<C: ConnectionTrait>(
    conn: &C,
    entries: Vec<(AuditEntry, Option<String>, Option<String>)>,
    backend: DbBackend,
) -> StoreResult<()> {
    // 9 parameters per row keeps a statement of 500 rows well under SQLite's variable limit.
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let mut values = Vec::with_capacity(500 * COLUMNS.len());
        for (e, before, after) in entries.by_ref().take(500) {
            values.extend([
                e.id.into(),
                e.at.into(),
                sea_query::Value::String(e.actor_id),
                e.category.into(),
                e.action.into(),
                sea_query::Value::String(e.object),
                sea_query::Value::String(e.record_id),
                sea_query::Value::String(before),
                sea_query::Value::String(after),
            ]);
        }
        conn.execute_raw(insert_many(backend, "sys_audit", &COLUMNS, values)).await?;
    }
    Ok(())
}

/// Rewrites the images of the record audit entries of `object` (of one record, if given):
/// `edit(record id, image)` changes an image's JSON text in place and says whether it did;
/// only changed entries are written back.
pub(super) async fn rewrite_record_images<C: ConnectionTrait>(
    conn: &C,
    object: &str,
    record_id: Option<&str>,
    mut edit: impl FnMut(&str, &mut Option<String>) -> bool,
) -> StoreResult<()> {
    let mut q = Query::select();
    q.columns(["id", "record_id", "before_image", "after_image"])
        .from("sys_audit")
        .and_where(Expr::col("category").eq("record"))
        .and_where(Expr::col("object").eq(object));
    if let Some(r) = record_id {
        q.and_where(Expr::col("record_id").eq(r));
    }
    for row in conn.query_all(&q).await? {
        let id: String = row.try_get_by_index(0)?;
        let Some(record) = row.try_get_by_index::<Option<String>>(1)? else { continue };
        let mut before: Option<String> = row.try_get_by_index(2)?;
        let mut after: Option<String> = row.try_get_by_index(3)?;
        let changed = edit(&record, &mut before) | edit(&record, &mut after);
        if changed {
            let update = Query::update()
                .table("sys_audit")
                .value("before_image", before)
                .value("after_image", after)
                .and_where(Expr::col("id").eq(id))
                .to_owned();
            conn.execute(&update).await?;
        }
    }
    Ok(())
}

impl Store {
    /// Appends entries outside any other write (sign-in events).
    pub async fn audit(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        let txn = self.begin_write().await?;
        append(&txn, entries, self.backend).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Reads the audit log, newest first.
    pub async fn audit_log(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let mut select = Query::select();
        select.columns(COLUMNS).from("sys_audit");
        for (col, v) in
            [("category", &q.category), ("object", &q.object), ("record_id", &q.record_id), ("actor_id", &q.actor_id)]
        {
            if let Some(v) = v {
                select.and_where(Expr::col(col).eq(v.clone()));
            }
        }
        if let Some(before) = &q.before_id {
            select.and_where(Expr::col("id").lt(before.clone()));
        }
        select.order_by("id", Order::Desc).limit(q.limit);
        let rows = self.db.query_all(&select).await?;
        let backend: DbBackend = self.backend;
        let text = |row, i: usize| -> StoreResult<Option<String>> {
            match decode(row, i, Storage::Text, backend, COLUMNS[i])? {
                tessera_metadata::Value::Text(s) => Ok(Some(s)),
                _ => Ok(None),
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let at = match decode(row, 1, Storage::DateTime, backend, "at")? {
                tessera_metadata::Value::DateTime(d) => d,
                _ => Utc::now(),
            };
            let json = |i| -> StoreResult<Option<serde_json::Value>> {
                Ok(text(row, i)?.and_then(|s| serde_json::from_str(&s).ok()))
            };
            out.push(AuditEntry {
                id: text(row, 0)?.unwrap_or_default(),
                at,
                actor_id: text(row, 2)?,
                category: text(row, 3)?.unwrap_or_default(),
                action: text(row, 4)?.unwrap_or_default(),
                object: text(row, 5)?,
                record_id: text(row, 6)?,
                before: json(7)?,
                after: json(8)?,
            });
        }
        Ok(out)
    }
}
