//! Compiles the query model (filters, sort keys, keyset cursors) into sea-query conditions.

use sea_query::{Condition, Expr, ExprTrait, Func, LikeExpr, Query, SelectStatement};
use tessera_metadata::{Filter, FilterOp, NullsOrder, OrderKey, SortDirection, Value};

use super::codec::{Storage, to_sql};

fn bind(value: &Value) -> sea_query::Value {
    // Nulls never reach here (they compile to IS NULL), so the storage hint is irrelevant.
    to_sql(value, Storage::Text)
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// A `like` pattern of the API as SQL for `ESCAPE '\\'`: `%` and `_` are wildcards, and a
/// backslash makes the `%`, `_` or backslash after it literal. Any other backslash (before an
/// ordinary character, or last) is itself literal. Both engines then read the pattern alike;
/// left to themselves, PostgreSQL refuses a pattern that ends in its escape character and
/// SQLite matches nothing with it.
fn like_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 2);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some(&next @ ('%' | '_' | '\\')) => {
                out.push('\\');
                out.push(next);
                chars.next();
            }
            _ => out.push_str("\\\\"),
        }
    }
    out
}

fn like(pattern: String) -> LikeExpr {
    LikeExpr::new(pattern).escape('\\')
}

/// The condition of one comparison.
fn compare(column: &str, op: &FilterOp) -> Condition {
    let col = || Expr::col(column.to_string());
    let lower = || Expr::expr(Func::lower(Expr::col(column.to_string())));
    let expr: Expr = match op {
        FilterOp::Eq(Value::Null) => col().is_null(),
        FilterOp::Neq(Value::Null) => col().is_not_null(),
        FilterOp::Eq(v) => col().eq(bind(v)),
        // SQL's `<>` drops nulls; "not equal to x" in a CRM includes empty values.
        FilterOp::Neq(v) => return Condition::any().add(col().ne(bind(v))).add(col().is_null()),
        FilterOp::In(vs) if vs.is_empty() => Expr::cust("1 = 0"),
        FilterOp::NotIn(vs) if vs.is_empty() => Expr::cust("1 = 1"),
        FilterOp::In(vs) => col().is_in(vs.iter().map(bind)),
        FilterOp::NotIn(vs) => return Condition::any().add(col().is_not_in(vs.iter().map(bind))).add(col().is_null()),
        FilterOp::Gt(v) => col().gt(bind(v)),
        FilterOp::Gte(v) => col().gte(bind(v)),
        FilterOp::Lt(v) => col().lt(bind(v)),
        FilterOp::Lte(v) => col().lte(bind(v)),
        FilterOp::Like(p) => col().like(like(like_pattern(p))),
        FilterOp::ILike(p) => lower().like(like(like_pattern(&p.to_lowercase()))),
        FilterOp::StartsWith(s) => col().like(like(format!("{}%", escape_like(s)))),
        FilterOp::EndsWith(s) => col().like(like(format!("%{}", escape_like(s)))),
        FilterOp::IsNull(true) => col().is_null(),
        FilterOp::IsNull(false) => col().is_not_null(),
    };
    Condition::all().add(expr)
}

/// `column IN (ids…)` with every id in one bound JSON array, so the statement text is the same
/// whatever the number of ids: one cached prepared statement instead of one per list length.
pub fn in_text_list(column: &str, ids: &[String], backend: sea_orm::DbBackend) -> Expr {
    let json = serde_json::Value::from(ids.to_vec()).to_string();
    // sea-query substitutes `$1` in custom SQL for PostgreSQL and `?` for SQLite.
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            format!("\"{column}\" IN (SELECT jsonb_array_elements_text(CAST($1 AS jsonb)))")
        }
        _ => format!("\"{column}\" IN (SELECT value FROM json_each(?))"),
    };
    Expr::cust_with_values(sql, [json])
}

/// Compiles a filter to a condition on the current table.
pub fn condition(filter: &Filter) -> Condition {
    match filter {
        Filter::Column { column, op } => compare(column, op),
        Filter::Related { column, target, filter } => {
            let sub: SelectStatement = Query::select()
                .column("id")
                .from(target.table())
                .cond_where(Condition::all().add(condition(filter)).add(Expr::col("deleted_at").is_null()))
                .to_owned();
            Condition::all().add(Expr::col(column.clone()).in_subquery(sub))
        }
        Filter::And(parts) => parts.iter().fold(Condition::all(), |c, f| c.add(condition(f))),
        Filter::Or(parts) => {
            if parts.is_empty() {
                return Condition::all();
            }
            parts.iter().fold(Condition::any(), |c, f| c.add(condition(f)))
        }
        Filter::Not(inner) => condition(inner).not(),
        Filter::Probe { filter, .. } => condition(filter),
        // Values not yet turned into blind indexes match nothing rather than being compared
        // with index values they can never equal.
        Filter::Blind { hashes: None, .. } => Condition::all().add(Expr::cust("1 = 0")),
        Filter::Blind { index_column, hashes: Some(hashes), plain, column, .. } => {
            let by_index = Expr::col(index_column.clone()).is_in(hashes.iter().copied());
            if plain.is_empty() {
                Condition::all().add(by_index)
            } else {
                Condition::any().add(by_index).add(Expr::col(column.clone()).is_in(plain.iter().cloned()))
            }
        }
        Filter::OwnedBy { user, team: false, .. } => Condition::all().add(Expr::col("owner_id").eq(user.clone())),
        // The closure table lists every (manager, report) pair at any depth, the user included
        // as their own ancestor: one indexed lookup whatever the depth of the hierarchy.
        Filter::OwnedBy { user, team: true, broad } => {
            let team = Query::select()
                .column("descendant_id")
                .from("sys_user_closure")
                .and_where(Expr::col("ancestor_id").eq(user.clone()))
                .to_owned();
            // A large team owns most records: fetching them owner by owner through the owner
            // index (which SQLite picks, not knowing the team's size) is far slower than
            // checking each scanned row against the team. `owner_id || ''` is the same value
            // but no index column, so the planner scans or uses the caller's own filters.
            // (Only SQLite callers are ever broad; see `Store::team_is_broad`.)
            let owner = if *broad { Expr::cust("\"owner_id\" || ''") } else { Expr::col("owner_id") };
            Condition::all().add(owner.in_subquery(team))
        }
    }
}

/// Keys sort in this order: the requested keys and then `id` ascending.
pub fn full_order(order: &[OrderKey]) -> Vec<OrderKey> {
    let mut keys: Vec<OrderKey> = order.iter().filter(|k| k.column != "id").cloned().collect();
    let id = order.iter().find(|k| k.column == "id").cloned().unwrap_or(OrderKey {
        column: "id".into(),
        direction: SortDirection::Asc,
        nulls: NullsOrder::Last,
    });
    keys.push(id);
    keys
}

/// System columns that are never null: their null placement is moot, and leaving it out of
/// `ORDER BY` and keyset predicates lets both engines walk an index in order.
fn never_null(column: &str) -> bool {
    matches!(column, "id" | "owner_id" | "created_at" | "updated_at" | "created_by" | "updated_by" | "version")
}

/// The rows strictly after `values` in the order of `keys` (the keyset predicate), handling
/// nulls by their position in each key's ordering.
pub fn after(keys: &[OrderKey], values: &[Value]) -> Condition {
    let mut any = Condition::any();
    for i in 0..keys.len() {
        let mut all = Condition::all();
        for (k, v) in keys.iter().zip(values).take(i) {
            all = all.add(match v {
                Value::Null => Expr::col(k.column.clone()).is_null(),
                v => Expr::col(k.column.clone()).eq(bind(v)),
            });
        }
        let (k, v) = (&keys[i], &values[i]);
        let col = || Expr::col(k.column.clone());
        let beyond = match (v, k.nulls) {
            // After a null: only non-nulls remain if nulls come first; nothing if they come last.
            (Value::Null, NullsOrder::First) => Some(Condition::all().add(col().is_not_null())),
            (Value::Null, NullsOrder::Last) => None,
            (v, nulls) => {
                let cmp = match k.direction {
                    SortDirection::Asc => col().gt(bind(v)),
                    SortDirection::Desc => col().lt(bind(v)),
                };
                Some(match nulls {
                    NullsOrder::Last if !never_null(&k.column) => Condition::any().add(cmp).add(col().is_null()),
                    _ => Condition::all().add(cmp),
                })
            }
        };
        if let Some(b) = beyond {
            any = any.add(all.add(b));
        }
    }
    if any.is_empty() { Condition::all().add(Expr::cust("1 = 0")) } else { any }
}

/// Applies `ORDER BY` with explicit null placement.
pub fn apply_order<S: sea_query::OrderedStatement>(select: &mut S, keys: &[OrderKey]) {
    for k in keys {
        let order = match k.direction {
            SortDirection::Asc => sea_query::Order::Asc,
            SortDirection::Desc => sea_query::Order::Desc,
        };
        if never_null(&k.column) {
            select.order_by(k.column.clone(), order);
            continue;
        }
        let nulls = match k.nulls {
            NullsOrder::First => sea_query::NullOrdering::First,
            NullsOrder::Last => sea_query::NullOrdering::Last,
        };
        select.order_by_with_nulls(k.column.clone(), order, nulls);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};
    use tessera_metadata::ObjectName;

    #[test]
    fn compiles_filters_and_keyset_predicates() {
        let f = Filter::And(vec![
            Filter::Or(vec![
                Filter::Column { column: "name".into(), op: FilterOp::StartsWith("Ac_%".into()) },
                Filter::Not(Box::new(Filter::Column { column: "amount".into(), op: FilterOp::Gte(Value::Int(100)) })),
            ]),
            Filter::Related {
                column: "account_id".into(),
                target: ObjectName::new("account").unwrap(),
                filter: Box::new(Filter::Column { column: "name".into(), op: FilterOp::ILike("%acme%".into()) }),
            },
            Filter::Column { column: "stage".into(), op: FilterOp::Neq(Value::Text("won".into())) },
        ]);
        let keys = full_order(&[OrderKey {
            column: "amount".into(),
            direction: SortDirection::Desc,
            nulls: NullsOrder::Last,
        }]);
        let mut q = Query::select()
            .column("id")
            .from("obj_contact")
            .cond_where(condition(&f))
            .cond_where(after(&keys, &[Value::Int(5), Value::Text("x".into())]))
            .to_owned();
        apply_order(&mut q, &keys);
        insta::assert_snapshot!(format!("{}\n{}", q.to_string(SqliteQueryBuilder), q.to_string(PostgresQueryBuilder)));
    }
}
#[cfg(test)]
mod like_tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_keep_wildcards_and_make_stray_backslashes_literal() {
        assert_eq!(like_pattern("a%b_c"), "a%b_c");
        assert_eq!(like_pattern(r"50\%"), r"50\%");
        assert_eq!(like_pattern(r"a\_b\\c"), r"a\_b\\c");
        assert_eq!(like_pattern(r"ends\"), r"ends\\");
        assert_eq!(like_pattern(r"a\b"), r"a\\b");
        assert_eq!(like_pattern(r"\\\"), r"\\\\");
    }
}

#[cfg(test)]
mod in_list_tests {
    #[test]
    fn binds_an_id_list_as_one_json_parameter() {
        let q = sea_query::Query::select()
            .column("id")
            .from("t")
            .and_where(super::in_text_list("id", &["a".into(), "b".into()], sea_orm::DbBackend::Postgres))
            .to_owned();
        let (sql, values) = q.build(sea_query::PostgresQueryBuilder);
        assert_eq!(sql, r#"SELECT "id" FROM "t" WHERE "id" IN (SELECT jsonb_array_elements_text(CAST($1 AS jsonb)))"#);
        assert_eq!(values.0, vec![sea_query::Value::String(Some(r#"["a","b"]"#.into()))]);
        let q = sea_query::Query::select()
            .column("id")
            .from("t")
            .and_where(super::in_text_list("id", &["a".into()], sea_orm::DbBackend::Sqlite))
            .to_owned();
        let (sql, values) = q.build(sea_query::SqliteQueryBuilder);
        assert_eq!(sql, r#"SELECT "id" FROM "t" WHERE "id" IN (SELECT value FROM json_each(?))"#);
        assert_eq!(values.0, vec![sea_query::Value::String(Some(r#"["a"]"#.into()))]);
    }
}

#[cfg(test)]
mod scope_tests {
    use sea_query::{Query, SqliteQueryBuilder};
    use tessera_metadata::Filter;

    fn sql(filter: &Filter) -> String {
        Query::select()
            .column("id")
            .from("t")
            .cond_where(super::condition(filter))
            .to_owned()
            .to_string(SqliteQueryBuilder)
    }

    #[test]
    fn compiles_row_scopes_through_the_hierarchy() {
        let own = Filter::OwnedBy { user: "u".into(), team: false, broad: false };
        assert_eq!(sql(&own), r#"SELECT "id" FROM "t" WHERE "owner_id" = 'u'"#);
        let team = Filter::OwnedBy { user: "u".into(), team: true, broad: false };
        assert_eq!(
            sql(&team),
            r#"SELECT "id" FROM "t" WHERE "owner_id" IN (SELECT "descendant_id" FROM "sys_user_closure" WHERE "ancestor_id" = 'u')"#
        );
        // A broad team is checked row by row instead of driving an owner-index lookup.
        let broad = Filter::OwnedBy { user: "u".into(), team: true, broad: true };
        assert_eq!(
            sql(&broad),
            r#"SELECT "id" FROM "t" WHERE ("owner_id" || '') IN (SELECT "descendant_id" FROM "sys_user_closure" WHERE "ancestor_id" = 'u')"#
        );
    }
}
