//! Formulas that read sensitive fields. The metadata service refuses them, but a database may
//! hold some saved before it did: such a formula is suspended (never run; every save stores it
//! empty, see `ObjectScripts::suspended`), its stored values are emptied when the server
//! starts, and the copies in audit images are erased with them. It runs again once its
//! expression no longer reads a sensitive field, or once the fields it reads stop being
//! sensitive (then it is recomputed inside that change).

use sea_orm::{ConnectionTrait, DatabaseTransaction};
use sea_query::{Expr, ExprTrait, Query};
use tessera_metadata::{ObjectDefinition, Registry};

use super::audit::{AuditEntry, append, rewrite_record_images};
use super::catalog::MetadataChange;
use super::codec::storage;
use super::privacy::ERASED;
use super::{Store, StoreResult};

impl Store {
    /// Empties the stored values of every suspended formula (and their copies in audit
    /// images, audited once as `suspend_formula`); warns about each at every start, until its
    /// expression is changed.
    pub async fn suspend_sensitive_formulas(&self, registry: &Registry) -> StoreResult<()> {
        for object in registry.objects() {
            for found in self.script_host().sensitive_formulas(object) {
                tracing::warn!(
                    object = %object.name,
                    formula = %found.formula,
                    reads = %found.describe_reads(),
                    "a formula reads sensitive fields: it is suspended (stored empty) until its expression reads none"
                );
                let Some(field) = object.field(&found.formula) else { continue };
                let column = field.column();
                let _guard = self.write_guard().await;
                let txn = self.begin_write().await?;
                let clear = Query::update()
                    .table(object.table())
                    .value(column.clone(), storage(field).null())
                    .and_where(Expr::col(column).is_not_null())
                    .to_owned();
                let cleared = txn.execute(&clear).await?.rows_affected();
                if cleared > 0 {
                    erase_from_images(&txn, object, &found.formula).await?;
                    let entry =
                        AuditEntry::new("metadata", "suspend_formula", None).on(object.name.as_str(), None).images(
                            None,
                            Some(serde_json::json!({"field": found.formula, "reads": found.reads, "cleared": cleared})),
                        );
                    append(&txn, &[entry], self.backend).await?;
                }
                txn.commit().await?;
            }
        }
        Ok(())
    }

    /// Inside a change that makes a field no longer sensitive: recomputes the formulas that
    /// read it and were suspended for it (those that still read another sensitive field stay
    /// suspended).
    pub(super) async fn resume_formulas(&self, txn: &DatabaseTransaction, change: &MetadataChange) -> StoreResult<()> {
        let MetadataChange::UpdateField { object, before, after, .. } = change else { return Ok(()) };
        if before.sensitive.is_none() || after.sensitive.is_some() {
            return Ok(());
        }
        let host = self.script_host();
        let still: Vec<String> = host.sensitive_formulas(object).into_iter().map(|f| f.formula).collect();
        for formula in object.formulas().filter(|f| !still.contains(&f.name.to_string())) {
            let Ok(compiled) = host.compile(formula.formula.as_deref().unwrap_or_default()) else { continue };
            if compiled.record_reads().includes(after.name.as_str()) {
                self.recompute_formula(txn, object, formula).await?;
            }
        }
        Ok(())
    }
}

/// Replaces the formula's value in every audit image of the object's records with `[erased]`.
async fn erase_from_images(txn: &DatabaseTransaction, object: &ObjectDefinition, formula: &str) -> StoreResult<()> {
    rewrite_record_images(txn, object.name.as_str(), None, |_, image| {
        let Some(text) = image.as_ref() else { return false };
        let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str::<serde_json::Value>(text) else {
            return false;
        };
        match map.get(formula) {
            Some(serde_json::Value::Null) | None => false,
            Some(_) => {
                map.insert(formula.to_string(), serde_json::Value::String(ERASED.into()));
                *image = Some(serde_json::Value::Object(map).to_string());
                true
            }
        }
    })
    .await
}
