//! Data-subject rights over personal data: audit images shown with their sensitive values
//! opened (or masked), exports of everything held about a record, and erasure of its personal
//! fields everywhere they are stored (the record, its field history in the audit log), leaving
//! an audit entry that the erasure happened.

use std::collections::HashSet;

use sea_orm::{ConnectionTrait, DatabaseTransaction};
use sea_query::{Expr, ExprTrait, Order, Query};
use serde_json::{Map, Value as Json, json};
use tessera_metadata::{Mask, ObjectDefinition, Registry};

use super::audit::{AuditEntry, AuditQuery, append, rewrite_record_images};
use super::codec::Storage;
use super::fence::Reach;
use super::reads::{ReadColumn, cursor_json, read_columns};
use super::{Store, StoreError, Via};
use crate::crypto::{Aad, envelope_version};
use crate::graphql::{Caller, DataError, DataResult, Record};

/// How `erasePersonalData` removes a data subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure {
    /// The record stays; its personal (sensitive) fields are emptied everywhere.
    Anonymize,
    /// The record is destroyed, and every stored image of it is emptied.
    Delete,
}

impl Erasure {
    pub fn as_str(self) -> &'static str {
        match self {
            Erasure::Anonymize => "ANONYMIZE",
            Erasure::Delete => "DELETE",
        }
    }
}

/// What replaces an erased value in audit images.
pub(super) const ERASED: &str = "[erased]";
/// Most records of one related object an export lists.
const EXPORT_RELATED_LIMIT: u64 = 10_000;

/// A record's values as API JSON keyed by field api name, with its system fields.
fn record_json(object: &ObjectDefinition, record: &Record) -> Json {
    let mut map = Map::new();
    map.insert("id".into(), json!(record.id));
    for system in ["owner_id", "created_at", "updated_at", "created_by", "updated_by", "version", "deleted_at"] {
        map.insert(system.into(), cursor_json(record.get(system)));
    }
    for f in &object.fields {
        if record.broken.contains(&f.column()) {
            map.insert(f.name.to_string(), json!({"error": "the stored value cannot be decrypted"}));
        } else if let Some(v) = record.values.get(&f.column()) {
            map.insert(f.name.to_string(), v.to_json(f));
        }
    }
    Json::Object(map)
}

impl Store {
    /// Opens the sensitive values in record audit images for the caller (masked where they may
    /// not see them unmasked; unmasked views logged). Values erased or no longer decryptable are
    /// shown as such.
    pub async fn reveal_audit(&self, caller: &Caller, registry: &Registry, entries: &mut [AuditEntry]) {
        let ring = self.key_ring().ok();
        // While the access log cannot be written, the images show every value masked (a field
        // shown to everyone, fully): the rest of the history stays readable.
        let logging = self.access_log_available().is_ok();
        let mut log = Vec::new();
        for entry in entries.iter_mut() {
            let (Some(object), Some(record_id)) = (entry.object.clone(), entry.record_id.clone()) else { continue };
            let Some(def) = registry.object(&object) else { continue };
            if entry.category != "record" || !def.fields.iter().any(|f| f.sensitive.is_some()) {
                continue;
            }
            let grant = caller.access.object(&object);
            let mut shown: HashSet<String> = HashSet::new();
            for image in [&mut entry.before, &mut entry.after].into_iter().flatten() {
                let Json::Object(map) = image else { continue };
                for f in def.fields.iter().filter(|f| f.sensitive.is_some()) {
                    let Some(Json::String(stored)) = map.get(f.name.as_str()) else { continue };
                    if stored == ERASED {
                        continue;
                    }
                    let plain = if envelope_version(stored).is_some() {
                        let aad = Aad { object: &object, field: f.name.as_str(), record_id: &record_id };
                        match ring.as_ref().map(|r| r.decrypt(aad, stored)) {
                            Some(Ok(p)) => p,
                            _ => {
                                map.insert(f.name.to_string(), json!({"error": "cannot be decrypted"}));
                                continue;
                            }
                        }
                    } else {
                        stored.clone()
                    };
                    let mask = f.sensitive.map_or(Mask::None, |s| s.mask);
                    let value = if !logging {
                        if mask == Mask::None { Mask::Full } else { mask }.apply(&plain)
                    } else if mask == Mask::None || grant.unmasked(f.name.as_str()) {
                        shown.insert(f.name.to_string());
                        plain
                    } else {
                        mask.apply(&plain)
                    };
                    map.insert(f.name.to_string(), Json::String(value));
                }
            }
            if !shown.is_empty() {
                let mut fields: Vec<String> = shown.into_iter().collect();
                fields.sort();
                log.push(super::access_log::ReadBatch {
                    at: chrono::Utc::now(),
                    user_id: caller.user_id.clone(),
                    object: object.clone(),
                    fields,
                    via: Via::Audit,
                    request_id: caller.request_id.clone(),
                    record_ids: vec![record_id.clone()],
                });
            }
        }
        if self.log_sensitive_reads(log).await.is_err() {
            // Only when the log's writer has stopped, which the server does only on its way out.
            tracing::error!(user = %caller.user_id, "audit images were shown while the sensitive access log was stopping");
        }
    }

    /// Every column of a record (recycle bin included), sensitive values opened for `caller`.
    async fn full_record(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        id: &str,
        via: Via,
    ) -> DataResult<Option<Record>> {
        let columns: Vec<String> = object.fields.iter().map(|f| f.column()).collect();
        let Some(record) = self.read_one(object, id, &columns, true, None).await? else { return Ok(None) };
        let mut records = [record];
        self.reveal(caller, object, &mut records, via, None).await?;
        let [record] = records;
        Ok(Some(record))
    }

    /// Everything held about a record, for a data-subject access request: the record with its
    /// values unmasked, every record that refers to it through a lookup, and its history in the
    /// audit log. The export itself is audited and its sensitive reads logged.
    pub async fn export_personal_data(
        &self,
        caller: &Caller,
        registry: &Registry,
        object: &ObjectDefinition,
        id: &str,
    ) -> DataResult<Json> {
        let record = self
            .full_record(caller, object, id, Via::Export)
            .await?
            .ok_or_else(|| DataError::NotFound(format!("no {} with id `{id}`", object.name)))?;
        let mut related = Vec::new();
        for rel in registry.reverse_relations(object.name.as_str()) {
            let Some(source) = registry.object(rel.source.as_str()) else { continue };
            let columns: Vec<String> = source.fields.iter().map(|f| f.column()).collect();
            let read: Vec<ReadColumn> = read_columns(source, &columns);
            let q = Query::select()
                .columns(read.iter().map(|c| c.name.clone()))
                .from(source.table())
                .and_where(Expr::col(rel.column.clone()).eq(id))
                .order_by("id", Order::Asc)
                .limit(EXPORT_RELATED_LIMIT)
                .to_owned();
            let mut records = Vec::new();
            for row in self.db.query_all(&q).await? {
                records.push(self.decode_record(&row, &read)?);
            }
            self.reveal(caller, source, &mut records, Via::Export, None).await?;
            related.push(json!({
                "object": source.name.as_str(),
                "field": rel.field,
                "records": records.iter().map(|r| record_json(source, r)).collect::<Vec<_>>(),
            }));
        }
        let mut history = self
            .audit_log(&AuditQuery {
                category: Some("record".into()),
                object: Some(object.name.to_string()),
                record_id: Some(id.to_string()),
                limit: 10_000,
                ..AuditQuery::default()
            })
            .await?;
        self.reveal_audit(caller, registry, &mut history).await;
        let history: Vec<Json> = history
            .into_iter()
            .map(|e| {
                json!({
                    "at": e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "actorId": e.actor_id,
                    "action": e.action,
                    "before": e.before,
                    "after": e.after,
                })
            })
            .collect();
        self.audit(&[AuditEntry::new("privacy", "export_personal_data", Some(&caller.user_id))
            .on(object.name.as_str(), Some(id))])
            .await?;
        Ok(json!({
            "object": object.name.as_str(),
            "exportedAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "record": record_json(object, &record),
            "related": related,
            "history": history,
        }))
    }

    /// Erases a data subject: with `Anonymize` the record's sensitive fields are emptied, with
    /// `Delete` the record is destroyed (lookups to it cleared); either way the erased values
    /// are removed from every audit image of the record, and one audit entry records the
    /// erasure (without any of the values). One transaction.
    pub async fn erase_personal_data(
        &self,
        caller: &Caller,
        registry: &Registry,
        object: &ObjectDefinition,
        id: &str,
        mode: Erasure,
    ) -> DataResult<Vec<String>> {
        let personal: Vec<&tessera_metadata::FieldDefinition> =
            object.fields.iter().filter(|f| f.sensitive.is_some()).collect();
        if mode == Erasure::Anonymize && personal.is_empty() {
            return Err(DataError::bad_input(format!(
                "`{}` has no sensitive fields to anonymise; mark its personal fields sensitive, or erase with DELETE",
                object.name
            )));
        }
        let _guard = self.write_guard().await;
        // Destroying the record clears lookups of other objects to it.
        let reach = if mode == Erasure::Delete { Reach::Registry } else { Reach::Object };
        let txn = self.begin_fenced(registry, object, reach).await?;
        let exists = txn
            .query_one(&Query::select().column("id").from(object.table()).and_where(Expr::col("id").eq(id)).to_owned())
            .await?
            .is_some();
        if !exists {
            return Err(DataError::NotFound(format!("no {} with id `{id}`", object.name)));
        }
        let mut audit = Vec::new();
        let erased: Vec<String> = match mode {
            Erasure::Anonymize => {
                let mut update = Query::update();
                update.table(object.table());
                for f in &personal {
                    update.value(f.column(), Storage::Text.null());
                    if f.is_searchable() {
                        let index = f.blind_index_column();
                        update.value(index.clone(), super::writes::stored_as(object, &index).null());
                    }
                }
                update
                    .value("version", Expr::col("version").add(1))
                    .value("updated_at", super::writes::now())
                    .value("updated_by", caller.user_id.clone())
                    .and_where(Expr::col("id").eq(id));
                txn.execute(&update).await?;
                personal.iter().map(|f| f.name.to_string()).collect()
            }
            Erasure::Delete => {
                audit = super::writes::remove_record(&txn, registry, object, id, &caller.user_id).await?;
                object.fields.iter().map(|f| f.name.to_string()).collect()
            }
        };
        scrub_audit_images(&txn, object.name.as_str(), id, &erased, mode).await?;
        let entry = AuditEntry::new("privacy", "erase_personal_data", Some(&caller.user_id))
            .on(object.name.as_str(), Some(id))
            .images(None, Some(json!({ "mode": mode.as_str(), "fields": erased })));
        audit.push(entry);
        append(&txn, &audit, self.backend).await?;
        txn.commit().await?;
        drop(_guard);
        self.forget_old_pages().await;
        Ok(erased)
    }
}

/// Removes erased values from the audit images of one record: listed fields become `[erased]`;
/// with `Delete` the owner goes too.
async fn scrub_audit_images(
    txn: &DatabaseTransaction,
    object: &str,
    record_id: &str,
    fields: &[String],
    mode: Erasure,
) -> Result<(), StoreError> {
    rewrite_record_images(txn, object, Some(record_id), |_, image| {
        let Some(text) = image.as_ref() else { return false };
        let Ok(Json::Object(mut map)) = serde_json::from_str::<Json>(text) else {
            // An image that cannot be read cannot be scrubbed selectively: drop it whole.
            *image = None;
            return true;
        };
        for f in fields {
            if map.contains_key(f) {
                map.insert(f.clone(), Json::String(ERASED.into()));
            }
        }
        if mode == Erasure::Delete && map.contains_key("owner_id") {
            map.insert("owner_id".into(), Json::String(ERASED.into()));
        }
        *image = Some(Json::Object(map).to_string());
        true
    })
    .await
}
