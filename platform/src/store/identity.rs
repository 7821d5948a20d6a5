//! Session and API tokens (stored as hashes only) and the user a token belongs to.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use sea_query::{Expr, ExprTrait, Query};

use super::audit::{AuditEntry, append};
use super::codec::{Storage, decode};
use super::policy_rules::bump_access_version;
use super::users::UserRow;
use super::{Store, StoreResult};

/// An API token as listed: never its secret.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Session,
    Api,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Session => "session",
            TokenKind::Api => "api",
        }
    }
}

impl Store {
    pub async fn insert_token(
        &self,
        user_id: &str,
        kind: TokenKind,
        name: &str,
        token_hash: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> StoreResult<String> {
        let _guard = self.write_guard().await;
        let id = uuid::Uuid::now_v7().to_string();
        self.writer
            .execute(
                &Query::insert()
                    .into_table("sys_tokens")
                    .columns(["id", "user_id", "kind", "name", "token_hash", "created_at", "expires_at"])
                    .values(
                        [
                            id.clone().into(),
                            user_id.into(),
                            kind.as_str().into(),
                            name.into(),
                            token_hash.into(),
                            Utc::now().into(),
                            sea_query::Value::ChronoDateTimeUtc(expires_at),
                        ]
                        .map(Expr::val),
                    )?
                    .to_owned(),
            )
            .await?;
        Ok(id)
    }

    /// The active user holding a live token with this hash.
    pub async fn user_for_token(&self, token_hash: &str) -> StoreResult<Option<UserRow>> {
        let now = Utc::now();
        let row = self
            .db
            .query_one(
                &Query::select()
                    .column(("u", "id"))
                    .from_as("sys_tokens", "t")
                    .join_as(
                        sea_query::JoinType::InnerJoin,
                        "sys_users",
                        "u",
                        Expr::col(("u", "id")).equals(("t", "user_id")),
                    )
                    .and_where(Expr::col(("t", "token_hash")).eq(token_hash))
                    .and_where(Expr::col(("t", "revoked_at")).is_null())
                    .and_where(Expr::col(("t", "expires_at")).is_null().or(Expr::col(("t", "expires_at")).gt(now)))
                    .and_where(Expr::col(("u", "active")).eq(true))
                    .to_owned(),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get_by_index(0)?;
        self.get_user(&id).await
    }

    /// A user's API tokens (never their secrets), newest first.
    pub async fn api_tokens(&self, user_id: &str) -> StoreResult<Vec<TokenRow>> {
        let rows = self
            .db
            .query_all(
                &Query::select()
                    .columns(["id", "user_id", "name", "created_at", "revoked_at"])
                    .from("sys_tokens")
                    .and_where(Expr::col("user_id").eq(user_id))
                    .and_where(Expr::col("kind").eq(TokenKind::Api.as_str()))
                    .order_by("id", sea_query::Order::Desc)
                    .to_owned(),
            )
            .await?;
        let time = |row: &sea_orm::QueryResult, i: usize, name: &str| -> StoreResult<Option<DateTime<Utc>>> {
            Ok(match decode(row, i, Storage::DateTime, self.backend, name)? {
                tessera_metadata::Value::DateTime(d) => Some(d),
                _ => None,
            })
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(TokenRow {
                id: row.try_get_by_index(0)?,
                user_id: row.try_get_by_index(1)?,
                name: row.try_get_by_index(2)?,
                created_at: time(row, 3, "created_at")?.unwrap_or_else(Utc::now),
                revoked_at: time(row, 4, "revoked_at")?,
            });
        }
        Ok(out)
    }

    /// Revokes one token; returns its owner, or `None` when there is no such live token.
    pub async fn revoke_token(&self, token_id: &str, audit: AuditEntry) -> StoreResult<Option<String>> {
        let _guard = self.write_guard().await;
        let txn = self.begin_write().await?;
        let row = txn
            .query_one(
                &Query::update()
                    .table("sys_tokens")
                    .value("revoked_at", Utc::now())
                    .and_where(Expr::col("id").eq(token_id))
                    .and_where(Expr::col("revoked_at").is_null())
                    .returning_col("user_id")
                    .to_owned(),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let user: String = row.try_get_by_index(0)?;
        bump_access_version(&txn).await?;
        append(&txn, &[audit.on("user", Some(&user))], self.backend).await?;
        txn.commit().await?;
        Ok(Some(user))
    }
}
