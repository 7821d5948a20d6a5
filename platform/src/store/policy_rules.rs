//! The access engine's policy rules (casbin's `p` and `g` lines) in `sys_policy_rules`, and the
//! access version in `sys_metadata` that every change of access rules bumps in the same
//! transaction, so that other nodes can tell their rules are stale.

use std::future::Future;

use sea_orm::ConnectionTrait;
use sea_query::{Condition, Expr, ExprTrait, OnConflict, Order, Query};

use super::{Store, StoreError, StoreResult};

/// The value columns of a rule, in order.
const VALUE_COLUMNS: [&str; 6] = ["v0", "v1", "v2", "v3", "v4", "v5"];

/// The key of the access version in `sys_metadata`.
const ACCESS_VERSION: &str = "access_version";

/// One stored rule: its type (`p`, `g`, …) and its values. Unused trailing values are stored
/// as '' and left out here, so a rule of a four-value policy has exactly four values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRule {
    pub ptype: String,
    pub values: Vec<String>,
}

impl PolicyRule {
    pub fn new(ptype: impl Into<String>, values: impl IntoIterator<Item = impl Into<String>>) -> PolicyRule {
        PolicyRule { ptype: ptype.into(), values: values.into_iter().map(Into::into).collect() }
    }
}

/// Selects stored rules: of one type (or every type), with given values at given positions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRuleFilter {
    ptype: Option<String>,
    values: Vec<(usize, String)>,
}

impl PolicyRuleFilter {
    /// Every rule of every type.
    pub fn all() -> PolicyRuleFilter {
        PolicyRuleFilter::default()
    }

    /// Every rule of `ptype`.
    pub fn ptype(ptype: impl Into<String>) -> PolicyRuleFilter {
        PolicyRuleFilter { ptype: Some(ptype.into()), values: Vec::new() }
    }

    /// Narrows to rules whose value at `index` (0-based, below 6) is `value`.
    pub fn value(mut self, index: usize, value: impl Into<String>) -> PolicyRuleFilter {
        self.values.push((index, value.into()));
        self
    }

    /// Exactly this rule.
    pub fn exact(rule: &PolicyRule) -> PolicyRuleFilter {
        let mut filter = PolicyRuleFilter::ptype(rule.ptype.clone());
        for index in 0..VALUE_COLUMNS.len() {
            filter = filter.value(index, rule.values.get(index).cloned().unwrap_or_default());
        }
        filter
    }

    fn condition(&self) -> StoreResult<Condition> {
        let mut cond = Condition::all();
        if let Some(ptype) = &self.ptype {
            cond = cond.add(Expr::col("ptype").eq(ptype.as_str()));
        }
        for (index, value) in &self.values {
            let column = VALUE_COLUMNS
                .get(*index)
                .ok_or_else(|| StoreError::Refused(format!("a policy rule has no value number {index}")))?;
            cond = cond.add(Expr::col(*column).eq(value.as_str()));
        }
        Ok(cond)
    }
}

/// A change of rules: first the rules matching any of `remove` go, then `add` are inserted
/// (those already present are skipped).
#[derive(Debug, Clone, Default)]
pub struct PolicyChange {
    pub remove: Vec<PolicyRuleFilter>,
    pub add: Vec<PolicyRule>,
}

/// What a change did, seen inside its transaction before it commits.
#[derive(Debug, Clone)]
pub struct PolicyChangeEffect {
    /// How many rules were deleted and how many inserted.
    pub removed: u64,
    pub added: u64,
    /// Every rule as it stands after the change, ordered.
    pub rules: Vec<PolicyRule>,
    /// The access version the change moves to.
    pub access_version: i64,
}

impl Store {
    /// Every policy rule, ordered by type and values.
    pub async fn policy_rules(&self) -> StoreResult<Vec<PolicyRule>> {
        read_rules(&self.db).await
    }

    /// The access version in the database (another node may have moved it on).
    pub async fn stored_access_version(&self) -> StoreResult<i64> {
        let q = Query::select()
            .column("value")
            .from("sys_metadata")
            .and_where(Expr::col("key").eq(ACCESS_VERSION))
            .to_owned();
        let row =
            self.db.query_one(&q).await?.ok_or_else(|| StoreError::Corrupt("access version row is missing".into()))?;
        Ok(row.try_get_by_index(0)?)
    }

    /// Applies `change` and bumps the access version in one transaction, then hands the effect
    /// to `check` before committing. `check` may still refuse the change (an `Err` rolls
    /// everything back and is returned as the inner error) or derive a value from the new rules
    /// that must exist exactly when they do (an in-memory enforcer, say).
    ///
    /// The version is bumped first: on PostgreSQL that locks its row, so concurrent changes of
    /// access rules, from any node, run one after the other and each `check` sees every rule
    /// committed before it.
    pub async fn change_policy_rules<T, E, F, Fut>(
        &self,
        change: &PolicyChange,
        check: F,
    ) -> StoreResult<Result<(T, PolicyChangeEffect), E>>
    where
        F: FnOnce(&PolicyChangeEffect) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let _guard = self.write_guard().await;
        let txn = self.begin_write().await?;
        let effect = match write_change(&txn, change).await {
            Ok(effect) => effect,
            Err(e) => {
                // Roll back now rather than when the dropped transaction's connection is next
                // used: on SQLite it holds the database's write lock until then.
                if let Err(rollback) = txn.rollback().await {
                    tracing::warn!(error = %rollback, "rolling back a failed change of policy rules failed");
                }
                return Err(e);
            }
        };
        match check(&effect).await {
            Ok(value) => {
                txn.commit().await?;
                Ok(Ok((value, effect)))
            }
            Err(refusal) => {
                txn.rollback().await?;
                Ok(Err(refusal))
            }
        }
    }
}

async fn write_change(conn: &impl ConnectionTrait, change: &PolicyChange) -> StoreResult<PolicyChangeEffect> {
    let access_version = bump_access_version(conn).await?;
    let mut removed = 0;
    for filter in &change.remove {
        let delete = Query::delete().from_table("sys_policy_rules").cond_where(filter.condition()?).to_owned();
        removed += conn.execute(&delete).await?.rows_affected();
    }
    let mut added = 0;
    for rule in &change.add {
        added += conn.execute(&insert_rule(rule)?).await?.rows_affected();
    }
    let rules = read_rules(conn).await?;
    Ok(PolicyChangeEffect { removed, added, rules, access_version })
}

/// Removes every object permission (`p` rule) on `object` and its field permissions (all of
/// them, or those of one field) inside the caller's transaction, and bumps the access version:
/// a deleted object or field takes its grants with it in the same commit, so one created later
/// under the same name starts with none, and other nodes reload their rules.
pub(super) async fn forget_grants(conn: &impl ConnectionTrait, object: &str, field: Option<&str>) -> StoreResult<()> {
    if field.is_none() {
        let rules = PolicyRuleFilter::ptype("p").value(1, object);
        conn.execute(&Query::delete().from_table("sys_policy_rules").cond_where(rules.condition()?).to_owned()).await?;
    }
    super::roles::forget_fields(conn, object, field).await?;
    bump_access_version(conn).await?;
    Ok(())
}

/// Moves the access version on by one inside the caller's transaction and returns the new
/// value. Every change of access rules (policies, field permissions, role assignments) calls
/// this, so one number tells whether a node's view of access is current.
pub(super) async fn bump_access_version(conn: &impl ConnectionTrait) -> StoreResult<i64> {
    let update = Query::update()
        .table("sys_metadata")
        .value("value", Expr::col("value").add(1))
        .and_where(Expr::col("key").eq(ACCESS_VERSION))
        .returning_col("value")
        .to_owned();
    let row =
        conn.query_one(&update).await?.ok_or_else(|| StoreError::Corrupt("access version row is missing".into()))?;
    Ok(row.try_get_by_index(0)?)
}

fn insert_rule(rule: &PolicyRule) -> StoreResult<sea_query::InsertStatement> {
    if rule.values.len() > VALUE_COLUMNS.len() {
        return Err(StoreError::Refused(format!("a policy rule has at most {} values", VALUE_COLUMNS.len())));
    }
    let mut values: Vec<Expr> = vec![uuid::Uuid::now_v7().to_string().into(), rule.ptype.clone().into()];
    for index in 0..VALUE_COLUMNS.len() {
        values.push(rule.values.get(index).cloned().unwrap_or_default().into());
    }
    let mut columns = vec!["id", "ptype"];
    columns.extend(VALUE_COLUMNS);
    let mut conflict = vec!["ptype"];
    conflict.extend(VALUE_COLUMNS);
    Ok(Query::insert()
        .into_table("sys_policy_rules")
        .columns(columns)
        .values(values)?
        .on_conflict(OnConflict::columns(conflict).do_nothing().to_owned())
        .to_owned())
}

async fn read_rules(conn: &impl ConnectionTrait) -> StoreResult<Vec<PolicyRule>> {
    let mut q = Query::select();
    q.column("ptype").columns(VALUE_COLUMNS).from("sys_policy_rules").order_by("ptype", Order::Asc);
    for column in VALUE_COLUMNS {
        q.order_by(column, Order::Asc);
    }
    let rows = conn.query_all(&q).await?;
    let mut rules = Vec::with_capacity(rows.len());
    for row in rows {
        let ptype: String = row.try_get_by_index(0)?;
        let mut values = Vec::with_capacity(VALUE_COLUMNS.len());
        for index in 1..=VALUE_COLUMNS.len() {
            values.push(row.try_get_by_index::<String>(index)?);
        }
        while values.last().is_some_and(String::is_empty) {
            values.pop();
        }
        rules.push(PolicyRule { ptype, values });
    }
    Ok(rules)
}
