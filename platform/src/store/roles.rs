//! Roles and the field permissions each role has. Which objects and actions a role may use is
//! the policy engine's (`access::policy`); fields are here because they are per role, object
//! and field, and follow metadata changes.

use chrono::Utc;
use sea_orm::ConnectionTrait;
use sea_query::{Expr, ExprTrait, Order, Query};
use tessera_metadata::FieldAccess;

use super::audit::{AuditEntry, append};
use super::policy_rules::bump_access_version;
use super::{Store, StoreError, StoreResult};

/// A stored role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRow {
    pub name: String,
    pub label: String,
    pub description: Option<String>,
}

impl Store {
    pub async fn list_roles(&self) -> StoreResult<Vec<RoleRow>> {
        let rows = self
            .db
            .query_all(
                &Query::select()
                    .columns(["name", "label", "description"])
                    .from("sys_roles")
                    .order_by("name", Order::Asc)
                    .to_owned(),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RoleRow {
                    name: r.try_get_by_index(0)?,
                    label: r.try_get_by_index(1)?,
                    description: r.try_get_by_index(2)?,
                })
            })
            .collect()
    }

    pub async fn create_role(&self, role: &RoleRow, audit: AuditEntry) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        let txn = self.begin_write().await?;
        let exists = txn
            .query_one(
                &Query::select()
                    .column("name")
                    .from("sys_roles")
                    .and_where(Expr::col("name").eq(&role.name))
                    .to_owned(),
            )
            .await?;
        if exists.is_some() {
            return Err(StoreError::Refused(format!("role `{}` already exists", role.name)));
        }
        let now = Utc::now();
        txn.execute(
            &Query::insert()
                .into_table("sys_roles")
                .columns(["name", "label", "description", "created_at", "updated_at"])
                .values(
                    [
                        role.name.clone().into(),
                        role.label.clone().into(),
                        sea_query::Value::String(role.description.clone()),
                        now.into(),
                        now.into(),
                    ]
                    .map(Expr::val),
                )?
                .to_owned(),
        )
        .await?;
        append(&txn, &[audit], self.backend).await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn update_role(&self, role: &RoleRow, audit: AuditEntry) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        let txn = self.begin_write().await?;
        let result = txn
            .execute(
                &Query::update()
                    .table("sys_roles")
                    .value("label", role.label.clone())
                    .value("description", sea_query::Value::String(role.description.clone()))
                    .value("updated_at", Utc::now())
                    .and_where(Expr::col("name").eq(&role.name))
                    .to_owned(),
            )
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Refused(format!("no role named `{}`", role.name)));
        }
        append(&txn, &[audit], self.backend).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Deletes a role, taking it from every user and dropping its field permissions.
    pub async fn delete_role(&self, name: &str, audit: AuditEntry) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        let txn = self.begin_write().await?;
        for (table, column) in [("sys_user_roles", "role"), ("sys_field_permissions", "role")] {
            txn.execute(&Query::delete().from_table(table).and_where(Expr::col(column).eq(name)).to_owned()).await?;
        }
        let result = txn
            .execute(&Query::delete().from_table("sys_roles").and_where(Expr::col("name").eq(name)).to_owned())
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Refused(format!("no role named `{name}`")));
        }
        bump_access_version(&txn).await?;
        append(&txn, &[audit], self.backend).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Every explicit field permission: (role, object, field, access).
    pub async fn field_permissions(&self) -> StoreResult<Vec<(String, String, String, FieldAccess)>> {
        let rows = self
            .db
            .query_all(
                &Query::select()
                    .columns(["role", "object", "field", "access"])
                    .from("sys_field_permissions")
                    .order_by("role", Order::Asc)
                    .order_by("object", Order::Asc)
                    .order_by("field", Order::Asc)
                    .to_owned(),
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let access: String = r.try_get_by_index(3)?;
            let access = FieldAccess::parse(&access)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown field access `{access}`")))?;
            out.push((r.try_get_by_index(0)?, r.try_get_by_index(1)?, r.try_get_by_index(2)?, access));
        }
        Ok(out)
    }

    /// Sets (or with `None` removes) one role's explicit permission on one field.
    pub async fn set_field_permission(
        &self,
        role: &str,
        object: &str,
        field: &str,
        access: Option<FieldAccess>,
        audit: AuditEntry,
    ) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        let txn = self.begin_write().await?;
        txn.execute(
            &Query::delete()
                .from_table("sys_field_permissions")
                .and_where(Expr::col("role").eq(role))
                .and_where(Expr::col("object").eq(object))
                .and_where(Expr::col("field").eq(field))
                .to_owned(),
        )
        .await?;
        if let Some(access) = access {
            txn.execute(
                &Query::insert()
                    .into_table("sys_field_permissions")
                    .columns(["role", "object", "field", "access"])
                    .values([role.into(), object.into(), field.into(), access.as_str().into()])?
                    .to_owned(),
            )
            .await?;
        }
        bump_access_version(&txn).await?;
        append(&txn, &[audit], self.backend).await?;
        txn.commit().await?;
        Ok(())
    }
}

/// Drops the field permissions of a deleted object, or of one deleted field, inside the
/// metadata change's transaction: a later object or field of the same name starts with none.
pub(super) async fn forget_fields(conn: &impl ConnectionTrait, object: &str, field: Option<&str>) -> StoreResult<()> {
    let mut delete = Query::delete();
    delete.from_table("sys_field_permissions").and_where(Expr::col("object").eq(object));
    if let Some(f) = field {
        delete.and_where(Expr::col("field").eq(f));
    }
    conn.execute(&delete).await?;
    Ok(())
}
