//! Batched loading of what a selection asks for: the columns of each level, the records that
//! lookups point at, and the pages of reverse relations — one statement per relation and level,
//! never one per row.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_graphql::context::SelectionField;
use async_graphql::{Name, Value as GqlValue};
use tessera_metadata::{FieldType, ObjectDefinition, Value};

use super::data_schema::{DEFAULT_PAGE, DataContext, Shared};
use super::filter_input::{parse_filter, parse_order, system_column};
use super::{DataError, DataResult, ListQuery, PageRequest, Record};

/// A record with whatever its selection needs from related records, keyed by response key.
#[derive(Debug, Default)]
pub struct Node {
    pub record: Record,
    pub lookups: HashMap<String, Option<Arc<Node>>>,
    pub related: HashMap<String, Arc<Conn>>,
}

/// A loaded page of a connection.
#[derive(Debug, Default)]
pub struct Conn {
    pub nodes: Vec<Arc<Node>>,
    pub cursors: Vec<String>,
    pub has_next: bool,
    pub has_previous: bool,
    pub total: Option<i64>,
}

fn key<'a>(f: &SelectionField<'a>) -> &'a str {
    f.alias().unwrap_or(f.name())
}

/// The `nodes` and `edges { node }` selections of a connection field.
pub fn connection_node_parents<'a>(conn: &SelectionField<'a>) -> Vec<SelectionField<'a>> {
    let mut out = Vec::new();
    for f in conn.selection_set() {
        match f.name() {
            "nodes" => out.push(f),
            "edges" => out.extend(f.selection_set().filter(|n| n.name() == "node")),
            _ => {}
        }
    }
    out
}

/// Field columns a node selection reads (system columns are always read).
pub fn node_columns(object: &ObjectDefinition, fields: &[SelectionField<'_>]) -> Vec<String> {
    let mut out = Vec::new();
    for f in fields {
        let name = f.name();
        let field = object.field_by_graphql(name).or_else(|| {
            object.fields.iter().find(|d| d.field_type == FieldType::Lookup && d.graphql_id_name() == name)
        });
        if let Some(d) = field
            && !out.contains(&d.column())
        {
            out.push(d.column());
        }
    }
    out
}

fn children<'a>(parents: &[SelectionField<'a>]) -> Vec<SelectionField<'a>> {
    parents.iter().flat_map(|p| p.selection_set()).collect()
}

fn arg<'v>(args: &'v [(Name, GqlValue)], name: &str) -> Option<&'v GqlValue> {
    args.iter().find(|(n, _)| n.as_str() == name).map(|(_, v)| v).filter(|v| !matches!(v, GqlValue::Null))
}

fn count_arg(args: &[(Name, GqlValue)], name: &str, max: u64) -> DataResult<Option<u64>> {
    match arg(args, name) {
        None => Ok(None),
        Some(GqlValue::Number(n)) => match n.as_u64() {
            Some(v) if v <= max => Ok(Some(v)),
            _ => Err(DataError::bad_input(format!("`{name}` must be between 0 and {max}"))),
        },
        Some(_) => Err(DataError::bad_input(format!("`{name}` must be a number"))),
    }
}

fn string_arg(args: &[(Name, GqlValue)], name: &str) -> Option<String> {
    match arg(args, name) {
        Some(GqlValue::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The list query of a connection field from its arguments and selection.
pub fn list_query(
    shared: &Shared,
    object: &ObjectDefinition,
    args: &[(Name, GqlValue)],
    field: &SelectionField<'_>,
) -> DataResult<ListQuery> {
    let max = shared.limits.max_page;
    let first = count_arg(args, "first", max)?;
    let last = count_arg(args, "last", max)?;
    if first.is_some() && last.is_some() {
        return Err(DataError::bad_input("pass `first` or `last`, not both"));
    }
    let page = PageRequest {
        first: if last.is_none() { Some(first.unwrap_or(DEFAULT_PAGE)) } else { None },
        last,
        after: string_arg(args, "after"),
        before: string_arg(args, "before"),
    };
    let filter = match arg(args, "filter") {
        Some(f) => parse_filter(&shared.registry, &shared.access, object, f)?,
        None => None,
    };
    let order = match arg(args, "orderBy") {
        Some(o) => parse_order(&shared.access, object, o)?,
        None => Vec::new(),
    };
    for k in &order {
        if system_column(&k.column).is_none() && k.column == "deleted_at" {
            return Err(DataError::bad_input("cannot sort by deletedAt"));
        }
    }
    let parents = connection_node_parents(field);
    Ok(ListQuery {
        filter,
        order,
        page,
        columns: node_columns(object, &children(&parents)),
        with_total: field.selection_set().any(|f| f.name() == "totalCount"),
    })
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Wraps records into nodes, loading the lookups and reverse relations that `parents`' child
/// selections ask for, level by level.
pub fn prefetch<'a: 'b, 'b>(
    shared: &'b Shared,
    dc: &'b DataContext,
    object: &'b ObjectDefinition,
    records: Vec<Record>,
    parents: &'b [SelectionField<'a>],
) -> BoxFut<'b, DataResult<Vec<Arc<Node>>>> {
    Box::pin(async move {
        let fields = children(parents);
        let mut nodes: Vec<Node> = records.into_iter().map(|record| Node { record, ..Default::default() }).collect();
        // Group selections by response key: the same key may appear under `nodes` and `edges`.
        let mut seen = HashSet::new();
        for f in &fields {
            let k = key(f);
            if !seen.insert(k) {
                continue;
            }
            let same: Vec<SelectionField<'a>> = fields.iter().filter(|g| key(g) == k).cloned().collect();
            if let Some(def) = object.field_by_graphql(f.name()).filter(|d| d.field_type == FieldType::Lookup) {
                let Some(target) = def.target.as_ref().and_then(|t| shared.registry.object(t.as_str())) else {
                    continue;
                };
                let column = def.column();
                let ids: Vec<String> = nodes
                    .iter()
                    .filter_map(|n| match n.record.get(&column) {
                        Value::Text(id) => Some(id.clone()),
                        _ => None,
                    })
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                let columns = node_columns(target, &children(&same));
                let loaded = dc.store.load_many(&dc.caller, target, &ids, &columns).await?;
                let loaded = prefetch(shared, dc, target, loaded, &same).await?;
                let by_id: HashMap<&str, &Arc<Node>> = loaded.iter().map(|n| (n.record.id.as_str(), n)).collect();
                for n in &mut nodes {
                    let target_node = match n.record.get(&column) {
                        Value::Text(id) => by_id.get(id.as_str()).map(|x| (*x).clone()),
                        _ => None,
                    };
                    n.lookups.insert(k.to_string(), target_node);
                }
            } else if let Some(rel) =
                shared.registry.reverse_relations(object.name.as_str()).iter().find(|r| r.name == f.name())
            {
                let Some(source) = shared.registry.object(rel.source.as_str()) else { continue };
                let args = f.arguments().map_err(|e| DataError::bad_input(e.message))?;
                if arg(&args, "last").is_some() || arg(&args, "before").is_some() {
                    return Err(DataError::bad_input("nested connections page forwards only (`first`, `after`)"));
                }
                let query = list_query(shared, source, &args, f)?;
                let parents_ids: Vec<String> = nodes.iter().map(|n| n.record.id.clone()).collect();
                let mut pages = dc.store.load_related(&dc.caller, source, &rel.column, &parents_ids, &query).await?;
                let node_parents: Vec<SelectionField<'a>> = same.iter().flat_map(connection_node_parents).collect();
                // Load the next level for all pages at once, then hand each page its nodes back.
                let mut all = Vec::new();
                let mut spans = Vec::new();
                for n in &nodes {
                    let page = pages.remove(&n.record.id).unwrap_or_default();
                    spans.push((page.records.len(), page.cursors, page.has_next));
                    all.extend(page.records);
                }
                let loaded = prefetch(shared, dc, source, all, &node_parents).await?;
                let mut iter = loaded.into_iter();
                for (n, (len, cursors, has_next)) in nodes.iter_mut().zip(spans) {
                    let conn = Conn {
                        nodes: iter.by_ref().take(len).collect(),
                        cursors,
                        has_next,
                        has_previous: false,
                        total: None,
                    };
                    n.related.insert(k.to_string(), Arc::new(conn));
                }
            }
        }
        Ok(nodes.into_iter().map(Arc::new).collect())
    })
}
