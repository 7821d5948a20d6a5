//! Users, their roles and their place in the manager hierarchy. The hierarchy is kept as a
//! closure table (every manager–report pair at any depth, each user their own ancestor), moved
//! in the same transaction as the user row, so the `TEAM` scope is one indexed subquery.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use sea_query::{Expr, ExprTrait, Func, Order, Query};

use super::audit::{AuditEntry, append};
use super::policy_rules::bump_access_version;
use super::{Store, StoreError, StoreResult};

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
    pub manager_id: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
}

/// A sign-in attempt reserved on an account (see `Store::reserve_login`).
#[derive(Debug, Clone)]
pub struct LoginReservation {
    pub id: String,
    pub password_hash: String,
    /// Set when this attempt's count locked the account (a success unlocks it again).
    pub locked_until: Option<DateTime<Utc>>,
}

/// An account as a refused sign-in's audit entry names it.
#[derive(Debug, Clone)]
pub struct LoginSubject {
    pub id: String,
    pub active: bool,
}

/// Changes to a user; `None` leaves a property as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub password_hash: Option<String>,
    pub active: Option<bool>,
    pub roles: Option<Vec<String>>,
    /// `Some(None)` removes the manager.
    pub manager_id: Option<Option<String>>,
}

const USER_COLUMNS: [&str; 7] =
    ["id", "email", "password_hash", "display_name", "active", "manager_id", "locked_until"];

impl Store {
    /// Whether `id`'s team (them and everyone reporting to them) should be read by scanning
    /// rather than owner by owner. SQLite cannot tell how many owners the team subquery yields
    /// and walks the owner index for each; past a tenth of all users (an index lookup costs
    /// several scanned rows) the scan wins. PostgreSQL plans the semi-join from statistics.
    pub async fn team_is_broad(&self, id: &str) -> StoreResult<bool> {
        if self.is_postgres() {
            return Ok(false);
        }
        let team = Query::select()
            .expr(Func::count(Expr::col("descendant_id")))
            .from("sys_user_closure")
            .and_where(Expr::col("ancestor_id").eq(id))
            .to_owned();
        let row = self.db.query_one(&team).await?;
        let team: i64 = row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(1);
        let all = self.count_users().await?;
        Ok(team * 10 >= all)
    }

    pub async fn count_users(&self) -> StoreResult<i64> {
        let row =
            self.db.query_one(&Query::select().expr(Func::count(Expr::col("id"))).from("sys_users").to_owned()).await?;
        Ok(row.map(|r| r.try_get_by_index::<i64>(0)).transpose()?.unwrap_or(0))
    }

    /// Creates a user with their roles and place in the hierarchy, and the audit entry.
    pub async fn create_user(&self, user: &NewUser, audit: Option<AuditEntry>) -> StoreResult<String> {
        let _guard = self.write_guard().await;
        let id = uuid::Uuid::now_v7().to_string();
        let now = Utc::now();
        let txn = self.begin_write().await?;
        if self.user_id_by_email(&txn, &user.email).await?.is_some() {
            return Err(StoreError::Refused(format!("a user with email `{}` already exists", user.email)));
        }
        if let Some(manager) = &user.manager_id {
            require_user(&txn, manager).await?;
        }
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
        set_roles(&txn, &id, &user.roles).await?;
        txn.execute(
            &Query::insert()
                .into_table("sys_user_closure")
                .columns(["ancestor_id", "descendant_id", "depth"])
                .values([id.clone().into(), id.clone().into(), 0i32.into()])?
                .to_owned(),
        )
        .await?;
        if let Some(manager) = &user.manager_id {
            attach(&txn, &id, manager).await?;
        }
        bump_access_version(&txn).await?;
        if let Some(entry) = audit {
            append(&txn, &[entry.on("user", Some(&id))], self.backend).await?;
        }
        txn.commit().await?;
        Ok(id)
    }

    /// Applies a change to a user in one transaction. Deactivating revokes every session and
    /// API token of the user; a new password revokes their sessions.
    pub async fn update_user(&self, id: &str, change: &UserChange, audit: Option<AuditEntry>) -> StoreResult<UserRow> {
        let _guard = self.write_guard().await;
        let txn = self.begin_write().await?;
        require_user(&txn, id).await?;
        let mut update = Query::update();
        update.table("sys_users").value("updated_at", Utc::now()).and_where(Expr::col("id").eq(id));
        if let Some(email) = &change.email {
            if self.user_id_by_email(&txn, email).await?.is_some_and(|other| other != id) {
                return Err(StoreError::Refused(format!("a user with email `{email}` already exists")));
            }
            update.value("email", email.to_lowercase());
        }
        if let Some(name) = &change.display_name {
            update.value("display_name", name.clone());
        }
        if let Some(hash) = &change.password_hash {
            update.value("password_hash", hash.clone());
            update.value("failed_logins", 0).value("locked_until", sea_query::Value::ChronoDateTimeUtc(None));
        }
        if let Some(active) = change.active {
            update.value("active", active);
        }
        if let Some(manager) = &change.manager_id {
            update.value("manager_id", sea_query::Value::String(manager.clone()));
        }
        txn.execute(&update).await?;
        if let Some(roles) = &change.roles {
            txn.execute(
                &Query::delete().from_table("sys_user_roles").and_where(Expr::col("user_id").eq(id)).to_owned(),
            )
            .await?;
            set_roles(&txn, id, roles).await?;
        }
        if let Some(manager) = &change.manager_id {
            move_under(&txn, id, manager.as_deref()).await?;
        }
        let revoke_kinds: &[&str] = match (change.active, &change.password_hash) {
            (Some(false), _) => &["session", "api"],
            (_, Some(_)) => &["session"],
            _ => &[],
        };
        if !revoke_kinds.is_empty() {
            txn.execute(
                &Query::update()
                    .table("sys_tokens")
                    .value("revoked_at", Utc::now())
                    .and_where(Expr::col("user_id").eq(id))
                    .and_where(Expr::col("revoked_at").is_null())
                    .and_where(Expr::col("kind").is_in(revoke_kinds.iter().copied()))
                    .to_owned(),
            )
            .await?;
        }
        bump_access_version(&txn).await?;
        if let Some(entry) = audit {
            append(&txn, &[entry.on("user", Some(id))], self.backend).await?;
        }
        txn.commit().await?;
        self.get_user(id).await?.ok_or_else(|| StoreError::Corrupt(format!("user {id} vanished")))
    }

    async fn user_id_by_email(&self, conn: &impl ConnectionTrait, email: &str) -> StoreResult<Option<String>> {
        let row = conn
            .query_one(
                &Query::select()
                    .column("id")
                    .from("sys_users")
                    .and_where(Expr::col("email").eq(email.to_lowercase()))
                    .to_owned(),
            )
            .await?;
        Ok(row.map(|r| r.try_get_by_index::<String>(0)).transpose()?)
    }

    async fn roles_by_user(&self, ids: &[String]) -> StoreResult<HashMap<String, Vec<String>>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in ids.chunks(1000) {
            let rows = self
                .db
                .query_all(
                    &Query::select()
                        .columns(["user_id", "role"])
                        .from("sys_user_roles")
                        .and_where(super::filter::in_text_list("user_id", chunk, self.backend))
                        .order_by("role", Order::Asc)
                        .to_owned(),
                )
                .await?;
            for r in rows {
                out.entry(r.try_get_by_index(0)?).or_default().push(r.try_get_by_index(1)?);
            }
        }
        Ok(out)
    }

    async fn users_where(&self, condition: Option<sea_query::Condition>) -> StoreResult<Vec<UserRow>> {
        let mut q = Query::select();
        q.columns(USER_COLUMNS).from("sys_users").order_by("email", Order::Asc);
        if let Some(c) = condition {
            q.cond_where(c);
        }
        let rows = self.db.query_all(&q).await?;
        let mut users = Vec::with_capacity(rows.len());
        for row in &rows {
            let locked =
                match super::codec::decode(row, 6, super::codec::Storage::DateTime, self.backend, "locked_until")? {
                    tessera_metadata::Value::DateTime(d) => Some(d),
                    _ => None,
                };
            users.push(UserRow {
                id: row.try_get_by_index(0)?,
                email: row.try_get_by_index(1)?,
                password_hash: row.try_get_by_index(2)?,
                display_name: row.try_get_by_index(3)?,
                active: row.try_get_by_index(4)?,
                manager_id: row.try_get_by_index(5)?,
                locked_until: locked,
                roles: Vec::new(),
            });
        }
        let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
        let mut roles = self.roles_by_user(&ids).await?;
        for u in &mut users {
            u.roles = roles.remove(&u.id).unwrap_or_default();
        }
        Ok(users)
    }

    pub async fn list_users(&self) -> StoreResult<Vec<UserRow>> {
        self.users_where(None).await
    }

    pub async fn get_user(&self, id: &str) -> StoreResult<Option<UserRow>> {
        Ok(self.users_where(Some(sea_query::Condition::all().add(Expr::col("id").eq(id)))).await?.pop())
    }

    /// Reserves a sign-in attempt on the account of `email`, before its password is checked:
    /// counts it as a failure in a row at once (a success gives it back through
    /// `clear_failed_logins`), and locks the account until `now + lock` when that count reaches
    /// `max`. One statement, so parallel attempts on any node cannot all pass the limit. An
    /// expired lock starts a new count. Returns nothing for an unknown, inactive or locked
    /// account (the statement runs all the same, so all cost alike).
    pub async fn reserve_login(
        &self,
        email: &str,
        max: i32,
        lock: chrono::Duration,
    ) -> StoreResult<Option<LoginReservation>> {
        let now = Utc::now();
        let not_locked = sea_query::Condition::any()
            .add(Expr::col("locked_until").is_null())
            .add(Expr::col("locked_until").lte(now));
        // Rows past the `WHERE` with a lock have an expired one: their count starts again.
        let count = || -> Expr {
            sea_query::CaseStatement::new()
                .case(Expr::col("locked_until").is_null(), Expr::col("failed_logins").add(1))
                .finally(1)
                .into()
        };
        let locks: Expr = sea_query::CaseStatement::new()
            .case(count().gte(max), Expr::val(now + lock))
            .finally(Expr::val(sea_query::Value::ChronoDateTimeUtc(None)))
            .into();
        let reserve = Query::update()
            .table("sys_users")
            .value("failed_logins", count())
            .value("locked_until", locks)
            .and_where(Expr::col("email").eq(email.to_lowercase()))
            .and_where(Expr::col("active").eq(true))
            .cond_where(not_locked)
            .returning(Query::returning().columns(["id", "password_hash", "locked_until"]))
            .to_owned();
        let _guard = self.write_guard().await;
        let Some(row) = self.writer.query_one(&reserve).await? else { return Ok(None) };
        let locked_until =
            match super::codec::decode(&row, 2, super::codec::Storage::DateTime, self.backend, "locked_until")? {
                tessera_metadata::Value::DateTime(d) => Some(d),
                _ => None,
            };
        Ok(Some(LoginReservation {
            id: row.try_get_by_index(0)?,
            password_hash: row.try_get_by_index(1)?,
            locked_until,
        }))
    }

    /// Whether an account with `email` exists and may sign in, for the audit of a refused
    /// sign-in.
    pub async fn login_subject(&self, email: &str) -> StoreResult<Option<LoginSubject>> {
        let row = self
            .db
            .query_one(
                &Query::select()
                    .columns(["id", "active"])
                    .from("sys_users")
                    .and_where(Expr::col("email").eq(email.to_lowercase()))
                    .to_owned(),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(LoginSubject { id: row.try_get_by_index(0)?, active: row.try_get_by_index(1)? }))
    }

    /// A successful sign-in hands its reservation back: the count of failures in a row starts
    /// again, and a lock that count set is lifted.
    pub async fn clear_failed_logins(&self, id: &str) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        self.writer
            .execute(
                &Query::update()
                    .table("sys_users")
                    .value("failed_logins", 0)
                    .value("locked_until", sea_query::Value::ChronoDateTimeUtc(None))
                    .and_where(Expr::col("id").eq(id))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

async fn require_user(txn: &DatabaseTransaction, id: &str) -> StoreResult<()> {
    let found = txn
        .query_one(&Query::select().column("id").from("sys_users").and_where(Expr::col("id").eq(id)).to_owned())
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::Refused(format!("no user with id `{id}`"))),
    }
}

async fn set_roles(txn: &DatabaseTransaction, user: &str, roles: &[String]) -> StoreResult<()> {
    for role in roles {
        let known = txn
            .query_one(
                &Query::select().column("name").from("sys_roles").and_where(Expr::col("name").eq(role)).to_owned(),
            )
            .await?;
        if known.is_none() {
            return Err(StoreError::Refused(format!("no role named `{role}`")));
        }
        txn.execute(
            &Query::insert()
                .into_table("sys_user_roles")
                .columns(["user_id", "role"])
                .values([user.into(), role.clone().into()])?
                .to_owned(),
        )
        .await?;
    }
    Ok(())
}

/// Makes `user`'s subtree report to `manager`: every ancestor of the manager (the manager
/// included) becomes an ancestor of everyone in the subtree.
async fn attach(txn: &DatabaseTransaction, user: &str, manager: &str) -> StoreResult<()> {
    let select = Query::select()
        .column(("a", "ancestor_id"))
        .column(("d", "descendant_id"))
        .expr(Expr::col(("a", "depth")).add(Expr::col(("d", "depth"))).add(1))
        .from_as("sys_user_closure", "a")
        .join_as(sea_query::JoinType::CrossJoin, "sys_user_closure", "d", sea_query::Condition::all())
        .and_where(Expr::col(("a", "descendant_id")).eq(manager))
        .and_where(Expr::col(("d", "ancestor_id")).eq(user))
        .to_owned();
    txn.execute(
        &Query::insert()
            .into_table("sys_user_closure")
            .columns(["ancestor_id", "descendant_id", "depth"])
            .select_from(select)?
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Moves `user` (with everyone reporting to them) under `manager`, refusing a cycle.
async fn move_under(txn: &DatabaseTransaction, user: &str, manager: Option<&str>) -> StoreResult<()> {
    if let Some(m) = manager {
        require_user(txn, m).await?;
        let inside = txn
            .query_one(
                &Query::select()
                    .column("depth")
                    .from("sys_user_closure")
                    .and_where(Expr::col("ancestor_id").eq(user))
                    .and_where(Expr::col("descendant_id").eq(m))
                    .to_owned(),
            )
            .await?;
        if inside.is_some() {
            return Err(StoreError::Refused(
                "a user cannot report to themselves or to someone who reports to them".into(),
            ));
        }
    }
    let subtree = || {
        Query::select()
            .column("descendant_id")
            .from("sys_user_closure")
            .and_where(Expr::col("ancestor_id").eq(user))
            .to_owned()
    };
    // Detach: forget every link from outside the subtree into it.
    txn.execute(
        &Query::delete()
            .from_table("sys_user_closure")
            .and_where(Expr::col("descendant_id").in_subquery(subtree()))
            .and_where(Expr::col("ancestor_id").not_in_subquery(subtree()))
            .to_owned(),
    )
    .await?;
    if let Some(m) = manager {
        attach(txn, user, m).await?;
    }
    Ok(())
}
