//! The caller's access applied inside the store, on every statement: the row scope of each
//! action becomes part of the `WHERE` (lookups filtered through included), columns the caller
//! may not read are never selected, and writes to fields they may not edit are refused per field.

use tessera_metadata::{
    Action, FieldAccess, FieldIssue, FieldType, Filter, IssueCode, ObjectDefinition, ObjectGrant, OrderKey, Scope,
};

use super::reads::SYSTEM_COLUMNS;
use crate::graphql::{Caller, DataError, DataResult, RecordInput};

fn denied(object: &str, action: Action) -> DataError {
    DataError::Forbidden(format!("you may not {} `{object}` records", action.as_str()))
}

/// The records of `object` the caller may act on: `Ok(None)` for all of them.
fn scope_filter(caller: &Caller, object: &str, action: Action) -> DataResult<Option<Filter>> {
    let user = || caller.user_id.clone();
    match caller.access.object(object).scope(action) {
        None => Err(denied(object, action)),
        Some(None | Some(Scope::All)) => Ok(None),
        Some(Some(Scope::Own)) => Ok(Some(Filter::OwnedBy { user: user(), team: false, broad: false })),
        Some(Some(Scope::Team)) => Ok(Some(Filter::OwnedBy { user: user(), team: true, broad: caller.broad_team })),
    }
}

/// The row filter of an action: a record must be visible to be changed, so updates and deletes
/// are bounded by the read scope as well as their own.
pub(super) fn rows(caller: &Caller, object: &str, action: Action) -> DataResult<Option<Filter>> {
    let read = scope_filter(caller, object, Action::Read)?;
    if matches!(action, Action::Read | Action::Create) {
        return Ok(read);
    }
    Ok(Filter::and_maybe(read, scope_filter(caller, object, action)?))
}

/// The field a physical column belongs to, or `None` for a system column.
fn field_of<'a>(object: &'a ObjectDefinition, column: &str) -> Option<&'a tessera_metadata::FieldDefinition> {
    object.fields.iter().find(|f| f.column() == column)
}

fn unreadable(object: &ObjectDefinition, field: &str) -> DataError {
    DataError::Forbidden(format!("you may not read field `{field}` of `{}`", object.name))
}

/// Refuses a column the caller may not read (for filters, sorts, groups and aggregates).
pub(super) fn require_readable(caller: &Caller, object: &ObjectDefinition, column: &str) -> DataResult<()> {
    let grant = caller.access.object(object.name.as_str());
    match field_of(object, column) {
        Some(f) if grant.field(f.name.as_str()) < FieldAccess::Read => Err(unreadable(object, f.name.as_str())),
        _ => Ok(()),
    }
}

/// Keeps the columns the caller may read (system columns always are).
pub(super) fn readable_columns(caller: &Caller, object: &ObjectDefinition, columns: &[String]) -> Vec<String> {
    let grant = caller.access.object(object.name.as_str());
    if matches!(grant, ObjectGrant::Unrestricted) {
        return columns.to_vec();
    }
    columns
        .iter()
        .filter(|c| match field_of(object, c) {
            Some(f) => grant.field(f.name.as_str()) >= FieldAccess::Read,
            None => SYSTEM_COLUMNS.contains(&c.as_str()),
        })
        .cloned()
        .collect()
}

/// Checks the columns a filter compares, and adds each related object's read scope to the
/// conditions that go through a lookup, so nobody can probe records they cannot see.
pub(super) fn scope_related(caller: &Caller, object: &ObjectDefinition, filter: Filter) -> DataResult<Filter> {
    scope_tree(caller, Some(object), filter)
}

/// `object` is `None` inside a related condition: the columns compared there were checked
/// against the caller's schema by the API layer, which alone has the related definitions.
fn scope_tree(caller: &Caller, object: Option<&ObjectDefinition>, filter: Filter) -> DataResult<Filter> {
    let check = |column: &str| object.map_or(Ok(()), |o| require_readable(caller, o, column));
    let all = |parts: Vec<Filter>| parts.into_iter().map(|p| scope_tree(caller, object, p)).collect::<DataResult<_>>();
    Ok(match filter {
        Filter::Column { column, op } => {
            check(&column)?;
            Filter::Column { column, op }
        }
        Filter::Related { column, target, filter } => {
            check(&column)?;
            let inner = scope_tree(caller, None, *filter)?;
            let inner = Filter::and_maybe(Some(inner), rows(caller, target.as_str(), Action::Read)?)
                .unwrap_or(Filter::And(Vec::new()));
            Filter::Related { column, target, filter: Box::new(inner) }
        }
        Filter::And(parts) => Filter::And(all(parts)?),
        Filter::Or(parts) => Filter::Or(all(parts)?),
        Filter::Not(inner) => Filter::Not(Box::new(scope_tree(caller, object, *inner)?)),
        Filter::Probe { object: o, field, filter } => {
            Filter::Probe { object: o, field, filter: Box::new(scope_tree(caller, object, *filter)?) }
        }
        owned @ Filter::OwnedBy { .. } => owned,
        Filter::Blind { object: o, field, field_type, column, index_column, values, hashes, plain } => {
            check(&column)?;
            Filter::Blind { object: o, field, field_type, column, index_column, values, hashes, plain }
        }
    })
}

/// The full condition of a read: the caller's filter (checked and scoped) and the read scope.
pub(super) fn read_filter(
    caller: &Caller,
    object: &ObjectDefinition,
    filter: Option<&Filter>,
) -> DataResult<Option<Filter>> {
    let own = match filter {
        Some(f) => Some(scope_related(caller, object, f.clone())?),
        None => None,
    };
    Ok(Filter::and_maybe(own, rows(caller, object.name.as_str(), Action::Read)?))
}

/// Sort keys must be readable columns.
pub(super) fn check_order(caller: &Caller, object: &ObjectDefinition, order: &[OrderKey]) -> DataResult<()> {
    order.iter().try_for_each(|k| require_readable(caller, object, &k.column))
}

/// Per-field `READ_ONLY` issues of an input: fields the caller may not edit, and `owner`
/// without update access (new records are owned by their creator unless it is named).
pub(super) fn write_issues(
    caller: &Caller,
    object: &ObjectDefinition,
    index: usize,
    input: &RecordInput,
) -> Vec<FieldIssue> {
    let grant = caller.access.object(object.name.as_str());
    if matches!(grant, ObjectGrant::Unrestricted) {
        return Vec::new();
    }
    let mut issues = Vec::new();
    for name in input.keys() {
        // Input is keyed by field api name, and the owner by its column.
        let (editable, shown) = if name == "owner_id" {
            (grant.allows(Action::Update), "owner")
        } else {
            match object.field(name) {
                // Auto numbers and formulas are refused as read-only by input validation for everyone.
                Some(f) if f.field_type == FieldType::AutoNumber || f.is_formula() => (true, name.as_str()),
                Some(f) => (grant.field(f.name.as_str()) == FieldAccess::Edit, name.as_str()),
                // Unknown names are reported by input validation.
                None => (true, name.as_str()),
            }
        };
        if !editable {
            issues.push(
                FieldIssue::new(
                    shown,
                    IssueCode::ReadOnly,
                    format!("you may not change `{shown}` of `{}`", object.name),
                )
                .at(index),
            );
        }
    }
    issues
}

/// Refuses an action the caller may not take on the object at all.
pub(super) fn require(caller: &Caller, object: &ObjectDefinition, action: Action) -> DataResult<()> {
    if caller.access.object(object.name.as_str()).allows(action) {
        Ok(())
    } else {
        Err(denied(object.name.as_str(), action))
    }
}
