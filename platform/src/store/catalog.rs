//! Persistence of object definitions and the DDL that goes with each metadata change, applied
//! in one transaction with the metadata rows and the version bump.

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend};
use sea_query::{Expr, ExprTrait, Func, OnConflict, Query};
use tessera_metadata::{
    FieldDefinition, FieldType, IndexDefinition, ObjectDefinition, ScriptDefinition, TypeChange, Value,
};

use super::audit::{AuditEntry, append};
use super::codec::{Storage, decode, storage, to_sql};
use super::{Store, StoreError, StoreResult, ddl};

/// Tables with at most this many rows have their values encrypted (or indexed) within the
/// metadata change itself; larger ones are converted online by the background job.
const INLINE_CONVERSION_ROWS: i64 = 2_000;

/// One metadata change, carrying the object definition as it will be after the change.
/// (One change exists per request, so the size of its largest variant does not matter.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum MetadataChange {
    CreateObject {
        object: ObjectDefinition,
    },
    /// Labels or description only.
    UpdateObject {
        before: ObjectDefinition,
        object: ObjectDefinition,
    },
    DeleteObject {
        object: ObjectDefinition,
    },
    CreateField {
        object: ObjectDefinition,
        field: FieldDefinition,
    },
    UpdateField {
        object: ObjectDefinition,
        before: FieldDefinition,
        after: FieldDefinition,
        plan: TypeChange,
    },
    DeleteField {
        object: ObjectDefinition,
        field: FieldDefinition,
    },
    /// A script added or replaced (no DDL).
    SetScript {
        object: ObjectDefinition,
        before: Option<ScriptDefinition>,
        script: ScriptDefinition,
    },
    DeleteScript {
        object: ObjectDefinition,
        script: ScriptDefinition,
    },
    CreateIndex {
        object: ObjectDefinition,
        index: IndexDefinition,
    },
    DeleteIndex {
        object: ObjectDefinition,
        index: IndexDefinition,
    },
}

impl MetadataChange {
    fn action(&self) -> &'static str {
        match self {
            MetadataChange::CreateObject { .. } => "create_object",
            MetadataChange::UpdateObject { .. } => "update_object",
            MetadataChange::DeleteObject { .. } => "delete_object",
            MetadataChange::CreateField { .. } => "create_field",
            MetadataChange::UpdateField { .. } => "update_field",
            MetadataChange::DeleteField { .. } => "delete_field",
            MetadataChange::SetScript { .. } => "set_script",
            MetadataChange::DeleteScript { .. } => "delete_script",
            MetadataChange::CreateIndex { .. } => "create_index",
            MetadataChange::DeleteIndex { .. } => "delete_index",
        }
    }

    pub fn object(&self) -> &ObjectDefinition {
        match self {
            MetadataChange::CreateObject { object }
            | MetadataChange::UpdateObject { object, .. }
            | MetadataChange::DeleteObject { object }
            | MetadataChange::CreateField { object, .. }
            | MetadataChange::UpdateField { object, .. }
            | MetadataChange::DeleteField { object, .. }
            | MetadataChange::SetScript { object, .. }
            | MetadataChange::DeleteScript { object, .. }
            | MetadataChange::CreateIndex { object, .. }
            | MetadataChange::DeleteIndex { object, .. } => object,
        }
    }

    fn images(&self) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
        fn j<T: serde::Serialize>(v: &T) -> Option<serde_json::Value> {
            serde_json::to_value(v).ok()
        }
        match self {
            MetadataChange::CreateObject { object } => (None, j(object)),
            MetadataChange::UpdateObject { before, object } => (j(before), j(object)),
            MetadataChange::DeleteObject { object } => (j(object), None),
            MetadataChange::CreateField { field, .. } => (None, j(field)),
            MetadataChange::UpdateField { before, after, .. } => (j(before), j(after)),
            MetadataChange::DeleteField { field, .. } => (j(field), None),
            MetadataChange::SetScript { before, script, .. } => (before.as_ref().and_then(j), j(script)),
            MetadataChange::DeleteScript { script, .. } => (j(script), None),
            MetadataChange::CreateIndex { index, .. } => (None, j(index)),
            MetadataChange::DeleteIndex { index, .. } => (j(index), None),
        }
    }
}

/// `id` and `column` of every row where the column has a value.
async fn ids_and_values(
    txn: &DatabaseTransaction,
    table: &str,
    column: &str,
) -> Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
    txn.query_all(
        &Query::select()
            .columns(["id".to_string(), column.to_string()])
            .from(table.to_string())
            .and_where(Expr::col(column.to_string()).is_not_null())
            .to_owned(),
    )
    .await
}

impl Store {
    /// The stored metadata version and every object definition.
    pub async fn load_metadata(&self) -> StoreResult<(i64, Vec<ObjectDefinition>)> {
        let version = self.metadata_version(&self.db).await?;
        let rows = self
            .db
            .query_all(
                &Query::select()
                    .columns(["name", "definition"])
                    .from("sys_objects")
                    .order_by("name", sea_query::Order::Asc)
                    .to_owned(),
            )
            .await?;
        let mut objects = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.try_get_by_index(0)?;
            let text: String = row.try_get_by_index(1)?;
            let def: ObjectDefinition = serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("definition of object `{name}`: {e}")))?;
            objects.push(def);
        }
        Ok((version, objects))
    }

    /// The metadata version in the database (another node may have moved it on).
    pub async fn stored_metadata_version(&self) -> StoreResult<i64> {
        let q =
            Query::select().column("value").from("sys_metadata").and_where(Expr::col("key").eq("version")).to_owned();
        let row = self
            .db
            .query_one(&q)
            .await?
            .ok_or_else(|| StoreError::Corrupt("metadata version row is missing".into()))?;
        Ok(row.try_get_by_index(0)?)
    }

    /// Whether the object has any record (the recycle bin included).
    pub async fn has_records(&self, object: &ObjectDefinition) -> StoreResult<bool> {
        let q = Query::select().column("id").from(object.table()).limit(1).to_owned();
        Ok(self.db.query_one(&q).await?.is_some())
    }

    /// Whether any record lacks a value in `column`.
    pub async fn has_nulls(&self, object: &ObjectDefinition, column: &str) -> StoreResult<bool> {
        let q = Query::select()
            .column("id")
            .from(object.table())
            .and_where(Expr::col(column.to_string()).is_null())
            .limit(1)
            .to_owned();
        Ok(self.db.query_one(&q).await?.is_some())
    }

    async fn metadata_version<C: ConnectionTrait>(&self, conn: &C) -> StoreResult<i64> {
        let mut q = Query::select();
        q.column("value").from("sys_metadata").and_where(Expr::col("key").eq("version"));
        if self.backend == DbBackend::Postgres {
            q.lock(sea_query::LockType::Update);
        }
        let row =
            conn.query_one(&q).await?.ok_or_else(|| StoreError::Corrupt("metadata version row is missing".into()))?;
        Ok(row.try_get_by_index(0)?)
    }

    /// Applies a metadata change: DDL, definition rows, version bump and audit entry in one
    /// transaction. Fails with `Refused` if another change landed since `expected_version`.
    pub async fn apply_metadata(
        &self,
        expected_version: i64,
        change: &MetadataChange,
        actor: &str,
    ) -> StoreResult<i64> {
        let _guard = self.write_guard().await;
        let txn = self.begin_write().await?;
        let current = self.metadata_version(&txn).await?;
        if current != expected_version {
            return Err(StoreError::Refused("the metadata changed meanwhile; reload and try again".into()));
        }
        self.apply_ddl(&txn, change).await?;
        self.resume_formulas(&txn, change).await?;
        let object = change.object();
        let now = Utc::now();
        match change {
            MetadataChange::DeleteObject { .. } => {
                txn.execute(
                    &Query::delete()
                        .from_table("sys_objects")
                        .and_where(Expr::col("name").eq(object.name.as_str()))
                        .to_owned(),
                )
                .await?;
                txn.execute(
                    &Query::delete()
                        .from_table("sys_sequences")
                        .and_where(Expr::col("object").eq(object.name.as_str()))
                        .to_owned(),
                )
                .await?;
                super::policy_rules::forget_grants(&txn, object.name.as_str(), None).await?;
            }
            _ => {
                if let MetadataChange::DeleteField { field, .. } = change {
                    super::policy_rules::forget_grants(&txn, object.name.as_str(), Some(field.name.as_str())).await?;
                }
                let definition = serde_json::to_string(object).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let insert = Query::insert()
                    .into_table("sys_objects")
                    .columns(["name", "definition", "created_at", "updated_at"])
                    .values([object.name.as_str().into(), definition.into(), now.into(), now.into()])?
                    .on_conflict(OnConflict::column("name").update_columns(["definition", "updated_at"]).to_owned())
                    .to_owned();
                txn.execute(&insert).await?;
            }
        }
        let next = current + 1;
        txn.execute(
            &Query::update()
                .table("sys_metadata")
                .value("value", next)
                .and_where(Expr::col("key").eq("version"))
                .to_owned(),
        )
        .await?;
        let (before, after) = change.images();
        let entry = AuditEntry::new("metadata", change.action(), Some(actor))
            .on(object.name.as_str(), None)
            .images(before, after);
        append(&txn, &[entry], self.backend).await?;
        txn.commit().await?;
        drop(_guard);
        self.schema_changed();
        if let MetadataChange::UpdateField { before, after, object, .. } = change
            && after.is_encrypted()
            && (!before.is_encrypted() || !before.is_searchable())
        {
            // Reads on this node accept plaintext from now until the conversion is done, not
            // only from the next poll of the job table.
            if let Err(e) = self.refresh_converting().await {
                tracing::warn!(error = %e, object = %object.name, "cannot refresh the fields being converted");
            }
            self.forget_old_pages().await;
        }
        Ok(next)
    }

    async fn apply_ddl(&self, txn: &DatabaseTransaction, change: &MetadataChange) -> StoreResult<()> {
        let pg = self.backend == DbBackend::Postgres;
        match change {
            MetadataChange::CreateObject { object } => {
                txn.execute(&ddl::create_table(object, self.backend)).await?;
                for ix in ddl::create_indexes(object) {
                    txn.execute(&ix).await?;
                }
                for f in object.fields.iter().filter(|f| f.field_type == FieldType::AutoNumber) {
                    self.init_sequence(txn, object, f, 1).await?;
                }
            }
            MetadataChange::UpdateObject { .. }
            | MetadataChange::SetScript { .. }
            | MetadataChange::DeleteScript { .. } => {}
            MetadataChange::DeleteObject { object } => {
                txn.execute(&ddl::drop_table(&object.table())).await?;
            }
            MetadataChange::CreateField { object, field } => {
                let table = object.table();
                let column = field.column();
                txn.execute(&ddl::add_column(&table, field, &column)).await?;
                if field.is_searchable() {
                    txn.execute(&ddl::add_blind_index_column(&table, field)).await?;
                }
                if pg && let Some(fk) = ddl::add_lookup_fk(&table, field) {
                    txn.execute(&fk).await?;
                }
                if let Some(default) = field.default().ok().flatten() {
                    let update = Query::update()
                        .table(table.clone())
                        .value(column.clone(), to_sql(&default, storage(field)))
                        .to_owned();
                    txn.execute(&update).await?;
                }
                if field.field_type == FieldType::AutoNumber {
                    let next = self.number_existing(txn, object, field).await?;
                    self.init_sequence(txn, object, field, next).await?;
                }
                if field.is_formula() {
                    self.recompute_formula(txn, object, field).await?;
                }
                if let Some(ix) = ddl::field_index(&table, field, &column) {
                    txn.execute(&ix).await?;
                }
            }
            MetadataChange::UpdateField { object, before, after, .. }
                if before.is_encrypted() != after.is_encrypted()
                    || before.is_searchable() != after.is_searchable()
                    || (after.is_encrypted() && before.unique != after.unique) =>
            {
                self.change_protection(txn, object, before, after).await?;
            }
            MetadataChange::UpdateField { object, before, after, plan } => {
                let table = object.table();
                let column = after.column();
                let index_changed = before.unique != after.unique || before.indexed != after.indexed;
                if *plan == TypeChange::Convert || index_changed {
                    for sql in ddl::drop_field_indexes(&table, &column, self.backend) {
                        txn.execute_unprepared(&sql).await?;
                    }
                }
                let covering: Vec<&IndexDefinition> =
                    object.indexes.iter().filter(|ix| ix.covers(after.name.as_str())).collect();
                if *plan == TypeChange::Convert {
                    // A column in an index cannot be replaced; the index is rebuilt after.
                    for ix in &covering {
                        txn.execute_unprepared(&ddl::drop_declared_index(&table, ix)).await?;
                    }
                    self.convert_column(txn, object, before, after).await?;
                    for ix in &covering {
                        if ix.unique {
                            self.refuse_shared_values(txn, object, ix).await?;
                        }
                        txn.execute(&ddl::declared_index(&table, object, ix)).await?;
                    }
                }
                if after.is_formula() && (before.formula != after.formula || *plan == TypeChange::Convert) {
                    self.recompute_formula(txn, object, after).await?;
                }
                if after.unique && (!before.unique || *plan == TypeChange::Convert) {
                    self.refuse_duplicates(txn, &table, after).await?;
                }
                if (*plan == TypeChange::Convert || index_changed)
                    && let Some(ix) = ddl::field_index(&table, after, &column)
                {
                    txn.execute(&ix).await?;
                }
            }
            MetadataChange::CreateIndex { object, index } => {
                let table = object.table();
                if index.unique {
                    self.refuse_shared_values(txn, object, index).await?;
                }
                txn.execute(&ddl::declared_index(&table, object, index)).await?;
            }
            MetadataChange::DeleteIndex { object, index } => {
                txn.execute_unprepared(&ddl::drop_declared_index(&object.table(), index)).await?;
            }
            MetadataChange::DeleteField { object, field } => {
                let table = object.table();
                let column = field.column();
                for sql in ddl::drop_field_indexes(&table, &column, self.backend) {
                    txn.execute_unprepared(&sql).await?;
                }
                if field.is_searchable() {
                    let index = field.blind_index_column();
                    for sql in ddl::drop_field_indexes(&table, &index, self.backend) {
                        txn.execute_unprepared(&sql).await?;
                    }
                    txn.execute(&ddl::drop_column(&table, &index)).await?;
                }
                txn.execute(&ddl::drop_column(&table, &column)).await?;
                txn.execute(
                    &Query::delete()
                        .from_table("sys_sequences")
                        .and_where(Expr::col("object").eq(object.name.as_str()))
                        .and_where(Expr::col("field").eq(field.name.as_str()))
                        .to_owned(),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// A field becomes encrypted, searchable, unique or their opposite. Its indexes are rebuilt
    /// where they now belong (the ciphertext is never indexed; a searchable field's blind index
    /// is), and the stored values follow: encrypted, decrypted or given blind indexes, with
    /// the audit images of the field's records encrypted too. Uniqueness is checked first on
    /// the normalised values, so the new unique index cannot fail half way.
    async fn change_protection(
        &self,
        txn: &DatabaseTransaction,
        object: &ObjectDefinition,
        before: &FieldDefinition,
        after: &FieldDefinition,
    ) -> StoreResult<()> {
        let table = object.table();
        let column = after.column();
        let index = after.blind_index_column();
        for c in [&column, &index] {
            for sql in ddl::drop_field_indexes(&table, c, self.backend) {
                txn.execute_unprepared(&sql).await?;
            }
        }
        if after.is_searchable() && !before.is_searchable() {
            txn.execute(&ddl::add_blind_index_column(&table, after)).await?;
        }
        // Values are encrypted or indexed here when there are few; otherwise by the background
        // conversion, online, in batches (reads and searches accept plaintext meanwhile).
        // Turning encryption off always decrypts here, so no ciphertext outlives the setting.
        let online = after.is_encrypted() && self.count_records(txn, object).await? > INLINE_CONVERSION_ROWS;
        self.rewrite_protected_values(txn, object, before, after, !online).await?;
        if online {
            super::key_jobs::enqueue_field_conversion(txn, self.backend, object.name.as_str(), after.name.as_str())
                .await?;
        } else if after.is_encrypted() {
            super::key_jobs::enqueue_field_sweep(txn, object.name.as_str(), after.name.as_str()).await?;
        } else {
            // A conversion still running for the field would encrypt what was just decrypted.
            txn.execute(
                &Query::delete()
                    .from_table("sys_key_jobs")
                    .and_where(Expr::col("kind").eq(super::key_jobs::JobKind::ConvertField.as_str()))
                    .and_where(Expr::col("object").eq(object.name.as_str()))
                    .and_where(Expr::col("field").eq(after.name.as_str()))
                    .to_owned(),
            )
            .await?;
        }
        if before.is_searchable() && !after.is_searchable() {
            txn.execute(&ddl::drop_column(&table, &index)).await?;
        }
        if after.unique && !after.is_encrypted() {
            self.refuse_duplicates(txn, &table, after).await?;
        }
        if let Some(ix) = ddl::field_index(&table, after, &column) {
            txn.execute(&ix).await?;
        }
        if after.is_encrypted() && !before.is_encrypted() && !online {
            self.seal_audit_images(txn, object, after).await?;
        }
        Ok(())
    }

    async fn count_records(&self, txn: &DatabaseTransaction, object: &ObjectDefinition) -> StoreResult<i64> {
        let q = Query::select().expr(Func::count(Expr::col("id"))).from(object.table()).to_owned();
        Ok(txn.query_one(&q).await?.map(|r| r.try_get_by_index::<i64>(0)).transpose()?.unwrap_or(0))
    }

    /// Rewrites every stored value of a field from its protection `before` to `after`, in the
    /// metadata change's transaction (with `write` false, only checks that the normalised
    /// values of a unique field are unique, for a conversion that runs later).
    async fn rewrite_protected_values(
        &self,
        txn: &DatabaseTransaction,
        object: &ObjectDefinition,
        before: &FieldDefinition,
        after: &FieldDefinition,
        write: bool,
    ) -> StoreResult<()> {
        let table = object.table();
        let column = after.column();
        let rows = ids_and_values(txn, &table, &column).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let ring = self.key_ring()?;
        let name = object.name.as_str();
        let converting = self.is_converting(name, before.name.as_str());
        // Values that do not open are plaintext when the field was not encrypted or is still
        // being converted.
        let tolerant = !before.is_encrypted() || converting;
        let mut seen: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
        let mut updates = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get_by_index(0)?;
            let stored: String = row.try_get_by_index(1)?;
            let mut plain = stored.clone();
            if before.is_encrypted() || converting {
                super::sensitive::open_value(&ring, name, before, &id, &mut plain, tolerant).map_err(|e| {
                    StoreError::Refused(format!(
                        "cannot change field `{}`: the value of record {id} cannot be decrypted ({e})",
                        after.name
                    ))
                })?;
            }
            let blind = after.is_searchable().then(|| ring.blind_index(after.field_type, &plain));
            if after.unique
                && let Some(b) = &blind
                && let Some(other) = seen.insert(*b, id.clone())
            {
                return Err(StoreError::Refused(format!(
                    "field `{}` cannot be unique: records {other} and {id} hold the same value (compared \
                     normalised: trimmed, lower-cased, phone numbers as digits with their country code)",
                    after.name
                )));
            }
            let value = if after.is_encrypted() {
                if before.is_encrypted() && !tolerant {
                    stored
                } else {
                    ring.encrypt(
                        crate::crypto::Aad { object: name, field: after.name.as_str(), record_id: &id },
                        &plain,
                    )
                }
            } else {
                plain
            };
            if write {
                updates.push((id, value, blind));
            }
        }
        for (id, value, blind) in updates {
            let mut update = Query::update();
            update.table(table.clone()).value(column.clone(), value);
            if let Some(b) = blind {
                update.value(after.blind_index_column(), b);
            }
            txn.execute(&update.and_where(Expr::col("id").eq(id)).to_owned()).await?;
        }
        Ok(())
    }

    /// Encrypts the plaintext values of a newly encrypted field in the audit images of its
    /// object's records, so no copy of them stays readable in the database.
    async fn seal_audit_images(
        &self,
        txn: &DatabaseTransaction,
        object: &ObjectDefinition,
        field: &FieldDefinition,
    ) -> StoreResult<()> {
        let ring = self.key_ring()?;
        let key = field.name.as_str();
        super::audit::rewrite_record_images(txn, object.name.as_str(), None, |record_id, image| {
            let Some(text) = image.as_ref() else { return false };
            let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str::<serde_json::Value>(text) else {
                return false;
            };
            let aad = crate::crypto::Aad { object: object.name.as_str(), field: key, record_id };
            match map.get(key) {
                Some(serde_json::Value::String(plain)) if ring.decrypt(aad, plain).is_err() => {
                    let sealed = ring.encrypt(aad, plain);
                    map.insert(key.to_string(), serde_json::Value::String(sealed));
                    *image = Some(serde_json::Value::Object(map).to_string());
                    true
                }
                _ => false,
            }
        })
        .await
    }

    async fn init_sequence(
        &self,
        txn: &DatabaseTransaction,
        object: &ObjectDefinition,
        field: &FieldDefinition,
        next: i64,
    ) -> StoreResult<()> {
        let insert = Query::insert()
            .into_table("sys_sequences")
            .columns(["object", "field", "next_value"])
            .values([object.name.as_str().into(), field.name.as_str().into(), next.into()])?
            .on_conflict(OnConflict::columns(["object", "field"]).update_column("next_value").to_owned())
            .to_owned();
        txn.execute(&insert).await?;
        Ok(())
    }

    /// Gives existing records numbers in creation order; returns the next number.
    async fn number_existing(
        &self,
        txn: &DatabaseTransaction,
        object: &ObjectDefinition,
        field: &FieldDefinition,
    ) -> StoreResult<i64> {
        let table = object.table();
        let rows = txn
            .query_all(
                &Query::select()
                    .column("id")
                    .from(table.clone())
                    .order_by("created_at", sea_query::Order::Asc)
                    .order_by("id", sea_query::Order::Asc)
                    .to_owned(),
            )
            .await?;
        let mut n = 1;
        for row in rows {
            let id: String = row.try_get_by_index(0)?;
            txn.execute(
                &Query::update()
                    .table(table.clone())
                    .value(field.column(), field.format_auto_number(n))
                    .and_where(Expr::col("id").eq(id))
                    .to_owned(),
            )
            .await?;
            n += 1;
        }
        Ok(n)
    }

    async fn refuse_duplicates(
        &self,
        txn: &DatabaseTransaction,
        table: &str,
        field: &FieldDefinition,
    ) -> StoreResult<()> {
        let column = field.column();
        let q = Query::select()
            .column(column.clone())
            .expr(Func::count(Expr::col("id")))
            .from(table.to_string())
            .and_where(Expr::col(column.clone()).is_not_null())
            .group_by_col(column.clone())
            .and_having(Func::count(Expr::col("id")).gt(1))
            .limit(1)
            .to_owned();
        if let Some(row) = txn.query_one(&q).await? {
            let sample = decode(&row, 0, storage(field), self.backend, &column)?.to_json(field);
            return Err(StoreError::Refused(format!(
                "field `{}` cannot be unique: several records share the value {sample}",
                field.name
            )));
        }
        Ok(())
    }

    /// Retypes a column by converting every stored value in Rust (refusing the change if any
    /// value cannot follow), writing the results to a new column and swapping it in.
    /// Refuses a unique index over fields whose values some records share, naming two of them.
    async fn refuse_shared_values(
        &self,
        txn: &DatabaseTransaction,
        object: &ObjectDefinition,
        index: &IndexDefinition,
    ) -> StoreResult<()> {
        let columns: Vec<String> =
            index.fields.iter().filter_map(|f| object.field(f.as_str())).map(|f| f.column()).collect();
        let mut q = Query::select();
        q.expr(Func::min(Expr::col("id"))).expr(Func::max(Expr::col("id"))).from(object.table());
        for c in &columns {
            q.and_where(Expr::col(c.clone()).is_not_null());
            q.add_group_by([Expr::col(c.clone())]);
        }
        q.and_having(Expr::expr(Func::count(Expr::col("id"))).gt(1)).limit(1);
        if let Some(row) = txn.query_one(&q).await? {
            let (a, b): (String, String) = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
            return Err(StoreError::Refused(format!(
                "index `{}` cannot be unique: records {a} and {b} have the same {}",
                index.name,
                index.fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    async fn convert_column(
        &self,
        txn: &DatabaseTransaction,
        object: &ObjectDefinition,
        before: &FieldDefinition,
        after: &FieldDefinition,
    ) -> StoreResult<()> {
        let table = object.table();
        let column = after.column();
        let rows = ids_and_values(txn, &table, &column).await?;
        let mut converted: Vec<(String, Value)> = Vec::with_capacity(rows.len());
        let mut failures = 0usize;
        let mut example = None;
        for row in &rows {
            let id: String = row.try_get_by_index(0)?;
            let old = decode(row, 1, storage(before), self.backend, &column)?;
            match old.convert(before, after) {
                Ok(v) => converted.push((id, v)),
                Err(issue) => {
                    failures += 1;
                    example.get_or_insert_with(|| format!("record {id} ({}: {})", old.to_json(before), issue.message));
                }
            }
        }
        if failures > 0 {
            return Err(StoreError::Refused(format!(
                "cannot change field `{}`: {failures} stored value(s) cannot be converted, e.g. {}",
                after.name,
                example.unwrap_or_default()
            )));
        }
        if Storage::of(before.field_type) == Storage::of(after.field_type) {
            for (id, v) in converted {
                txn.execute(
                    &Query::update()
                        .table(table.clone())
                        .value(column.clone(), to_sql(&v, storage(after)))
                        .and_where(Expr::col("id").eq(id))
                        .to_owned(),
                )
                .await?;
            }
            return Ok(());
        }
        let temp = format!("{column}__retype");
        txn.execute(&ddl::add_column(&table, after, &temp)).await?;
        for (id, v) in converted {
            txn.execute(
                &Query::update()
                    .table(table.clone())
                    .value(temp.clone(), to_sql(&v, storage(after)))
                    .and_where(Expr::col("id").eq(id))
                    .to_owned(),
            )
            .await?;
        }
        txn.execute(&ddl::drop_column(&table, &column)).await?;
        txn.execute(&ddl::rename_column(&table, &temp, &column)).await?;
        Ok(())
    }
}
