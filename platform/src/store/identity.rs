//! Users, their roles, and session / API tokens (stored as hashes only).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, TransactionTrait};
use sea_query::{Expr, ExprTrait, Func, Query};

use super::{Store, StoreResult};

/// A user to create; the password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub password_hash: String,
    pub display_name: String,
    pub roles: Vec<String>,
    pub manager_id: Option<String>,
}

/// A stored user with their roles.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub display_name: String,
    pub active: bool,
    pub roles: Vec<String>,
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
    pub async fn count_users(&self) -> StoreResult<i64> {
        let row =
            self.db.query_one(&Query::select().expr(Func::count(Expr::col("id"))).from("sys_users").to_owned()).await?;
        Ok(row.map(|r| r.try_get_by_index::<i64>(0)).transpose()?.unwrap_or(0))
    }

    pub async fn create_user(&self, user: &NewUser) -> StoreResult<String> {
        let _guard = self.write_guard().await;
        let id = uuid::Uuid::now_v7().to_string();
        let now = Utc::now();
        let txn = self.writer.begin().await?;
        txn.execute(
            &Query::insert()
                .into_table("sys_users")
                .columns([
                    "id",
                    "email",
                    "password_hash",
                    "display_name",
                    "active",
                    "manager_id",
                    "created_at",
                    "updated_at",
                ])
                .values(
                    [
                        id.clone().into(),
                        user.email.to_lowercase().into(),
                        user.password_hash.clone().into(),
                        user.display_name.clone().into(),
                        true.into(),
                        sea_query::Value::String(user.manager_id.clone()),
                        now.into(),
                        now.into(),
                    ]
                    .map(Expr::val),
                )?
                .to_owned(),
        )
        .await?;
        for role in &user.roles {
            txn.execute(
                &Query::insert()
                    .into_table("sys_user_roles")
                    .columns(["user_id", "role"])
                    .values([id.clone().into(), role.clone().into()])?
                    .to_owned(),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(id)
    }

    async fn roles_of(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let rows = self
            .db
            .query_all(
                &Query::select()
                    .column("role")
                    .from("sys_user_roles")
                    .and_where(Expr::col("user_id").eq(user_id))
                    .order_by("role", sea_query::Order::Asc)
                    .to_owned(),
            )
            .await?;
        rows.iter().map(|r| Ok(r.try_get_by_index::<String>(0)?)).collect()
    }

    pub async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>> {
        let row = self
            .db
            .query_one(
                &Query::select()
                    .columns(["id", "email", "password_hash", "display_name", "active"])
                    .from("sys_users")
                    .and_where(Expr::col("email").eq(email.to_lowercase()))
                    .to_owned(),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get_by_index(0)?;
        Ok(Some(UserRow {
            roles: self.roles_of(&id).await?,
            id,
            email: row.try_get_by_index(1)?,
            password_hash: row.try_get_by_index(2)?,
            display_name: row.try_get_by_index(3)?,
            active: row.try_get_by_index(4)?,
        }))
    }

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
                    .column(("u", "email"))
                    .column(("u", "display_name"))
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
        Ok(Some(UserRow {
            roles: self.roles_of(&id).await?,
            id,
            email: row.try_get_by_index(1)?,
            password_hash: String::new(),
            display_name: row.try_get_by_index(2)?,
            active: true,
        }))
    }
}
