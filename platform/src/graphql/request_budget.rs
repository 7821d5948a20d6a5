//! What a data API request may ask of the database, estimated from its document before anything
//! runs: the records it could read (each page, nested page and lookup multiplied by the pages
//! around it, aliases and fragments included, variables at their values) and the records its
//! mutations could write. async-graphql's own complexity counts one per field whatever `first`
//! says, so three nested pages of 100 (a million records) would cost ten; this counts them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextValidation,
};
use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, Field, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::{
    ErrorExtensionValues, Name, Pos, Positioned, Request, ServerError, ServerResult, ValidationResult,
};
use async_graphql::{Value, Variables};
use tessera_metadata::{FieldType, Registry};

use super::data_schema::{DEFAULT_PAGE, Limits};
use crate::store::MAX_UPDATE_MANY;

/// How many records a field yields for each record (or root) it is selected on.
#[derive(Debug, Clone, Copy)]
enum Yield {
    /// The same records seen through another type (`nodes`, `edges`, `node`).
    Through,
    /// One record: a lookup, a record by id, an aggregate's row, a single-record mutation.
    One,
    /// A connection's page: `first` (or, at the top, `last`), `DEFAULT_PAGE` without either.
    Page,
    /// A group-by's groups: `first`, at most and by default `max_groups`.
    Groups,
    /// A batch create: one record per element of `data`.
    Batch,
    /// An update by filter: up to `MAX_UPDATE_MANY` records.
    UpdateMany,
    /// No record (a destroyed record's id, an action's result).
    Nothing,
}

/// What selecting one field costs, and the type its selection set is read against.
#[derive(Debug, Clone)]
struct FieldCost {
    yields: Yield,
    /// Whether the field is a mutation writing the records it yields (or one record when it
    /// yields none).
    writes: bool,
    child: Option<String>,
}

impl FieldCost {
    fn new(yields: Yield, child: Option<String>) -> FieldCost {
        FieldCost { yields, writes: false, child }
    }

    fn write(yields: Yield, child: Option<String>) -> FieldCost {
        FieldCost { yields, writes: true, child }
    }
}

/// The cost of each field of each type of one data schema that reads or writes records.
#[derive(Debug, Default)]
struct CostModel {
    types: HashMap<String, HashMap<String, FieldCost>>,
    max_page: u64,
    max_groups: u64,
    max_rows: u64,
    max_written: u64,
}

impl CostModel {
    fn new(registry: &Registry, limits: &Limits) -> CostModel {
        let mut types: HashMap<String, HashMap<String, FieldCost>> = HashMap::new();
        for object in registry.objects() {
            let tn = object.type_name();
            let single = tessera_metadata::pascal_case(object.name.as_str());
            let plural = tessera_metadata::pascal_case(object.plural_name.as_str());
            let record = || Some(tn.clone());
            let query = types.entry("Query".into()).or_default();
            query.insert(object.single_field(), FieldCost::new(Yield::One, record()));
            query.insert(object.plural_field(), FieldCost::new(Yield::Page, Some(format!("{tn}Connection"))));
            query.insert(format!("{}Aggregate", object.plural_field()), FieldCost::new(Yield::One, None));
            query.insert(format!("{}GroupBy", object.plural_field()), FieldCost::new(Yield::Groups, None));
            let mutation = types.entry("Mutation".into()).or_default();
            mutation.insert(format!("create{single}"), FieldCost::write(Yield::One, record()));
            mutation.insert(format!("create{plural}"), FieldCost::write(Yield::Batch, record()));
            mutation.insert(format!("update{plural}"), FieldCost::write(Yield::UpdateMany, record()));
            for verb in ["update", "delete", "restore"] {
                mutation.insert(format!("{verb}{single}"), FieldCost::write(Yield::One, record()));
            }
            mutation.insert(format!("destroy{single}"), FieldCost::write(Yield::Nothing, None));
            types.insert(
                format!("{tn}Connection"),
                HashMap::from([
                    ("nodes".into(), FieldCost::new(Yield::Through, record())),
                    ("edges".into(), FieldCost::new(Yield::Through, Some(format!("{tn}Edge")))),
                ]),
            );
            types.insert(
                format!("{tn}Edge"),
                HashMap::from([("node".into(), FieldCost::new(Yield::Through, record()))]),
            );
            let fields = types.entry(tn.clone()).or_default();
            for f in object.fields.iter().filter(|f| f.field_type == FieldType::Lookup) {
                let target = f.target.as_ref().and_then(|t| registry.object(t.as_str()));
                if let Some(target) = target {
                    fields.insert(f.graphql_name(), FieldCost::new(Yield::One, Some(target.type_name())));
                }
            }
            for rel in registry.reverse_relations(object.name.as_str()) {
                if let Some(source) = registry.object(rel.source.as_str()) {
                    let connection = format!("{}Connection", source.type_name());
                    fields.insert(rel.name.clone(), FieldCost::new(Yield::Page, Some(connection)));
                }
            }
        }
        types.entry("Mutation".into()).or_default().insert("runAction".into(), FieldCost::write(Yield::Nothing, None));
        CostModel {
            types,
            max_page: limits.max_page,
            max_groups: limits.max_groups,
            max_rows: limits.max_request_rows,
            max_written: u64::try_from(limits.max_batch).unwrap_or(u64::MAX),
        }
    }
}

/// What one operation asks for, per record (or root) it is selected on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Cost {
    /// Records read or returned.
    rows: u64,
    /// Records written by creates, single updates, deletes, restores, destroys and actions.
    written: u64,
    /// Updates by filter.
    updates_by_filter: u64,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.rows = self.rows.saturating_add(other.rows);
        self.written = self.written.saturating_add(other.written);
        self.updates_by_filter = self.updates_by_filter.saturating_add(other.updates_by_filter);
    }

    fn times(self, n: u64) -> Cost {
        Cost {
            rows: self.rows.saturating_mul(n),
            written: self.written.saturating_mul(n),
            updates_by_filter: self.updates_by_filter.saturating_mul(n),
        }
    }
}

/// Walks one operation. The cost of a selection set is linear in the number of records it is
/// selected on, so each fragment is costed once per unit and multiplied where it is spread:
/// the walk stays linear in the document's size however fragments nest.
struct Walk<'a> {
    model: &'a CostModel,
    document: &'a ExecutableDocument,
    operation: &'a OperationDefinition,
    variables: &'a Variables,
    fragments: HashMap<Name, Cost>,
    /// Fragments being costed: a spread of one of them is a cycle, refused by validation.
    open: HashSet<Name>,
}

impl Walk<'_> {
    /// A variable's value: the request's, or the default its definition gives.
    fn variable(&self, name: &Name) -> Value {
        self.variables
            .get(name)
            .cloned()
            .or_else(|| {
                self.operation
                    .variable_definitions
                    .iter()
                    .find(|d| d.node.name.node == *name)
                    .and_then(|d| d.node.default_value().cloned())
            })
            .unwrap_or(Value::Null)
    }

    /// A field's argument with variables replaced (`Null` when absent).
    fn argument(&self, field: &Field, name: &str) -> Value {
        let value = field.get_argument(name).map(|v| v.node.clone());
        value.and_then(|v| v.into_const_with(|n| Ok::<_, ()>(self.variable(&n))).ok()).unwrap_or(Value::Null)
    }

    /// Whether `@skip` / `@include` leave a selection out.
    fn skipped(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().any(|d| {
            let condition = d.node.get_argument("if").map(|v| v.node.clone());
            let condition = condition
                .and_then(|v| v.into_const_with(|n| Ok::<_, ()>(self.variable(&n))).ok())
                .unwrap_or(Value::Null);
            match d.node.name.node.as_str() {
                "skip" => condition == Value::Boolean(true),
                "include" => condition == Value::Boolean(false),
                _ => false,
            }
        })
    }

    /// A page size argument: at most `max`; an invalid one is refused when the field runs, and
    /// counts as `max` until then.
    fn count(&self, value: Value, max: u64) -> Option<u64> {
        match value {
            Value::Null => None,
            Value::Number(n) => Some(n.as_u64().map_or(max, |n| n.min(max))),
            _ => Some(max),
        }
    }

    fn records(&self, field: &Field, yields: Yield) -> u64 {
        let arg = |name: &str| self.argument(field, name);
        match yields {
            Yield::Through | Yield::Nothing => 0,
            Yield::One => 1,
            Yield::Page => {
                let first = self.count(arg("first"), self.model.max_page);
                let last = self.count(arg("last"), self.model.max_page);
                match (first, last) {
                    (None, None) => DEFAULT_PAGE.min(self.model.max_page),
                    (a, b) => a.unwrap_or(0).max(b.unwrap_or(0)),
                }
            }
            Yield::Groups => self.count(arg("first"), self.model.max_groups).unwrap_or(self.model.max_groups),
            Yield::Batch => match arg("data") {
                Value::List(items) => items.len() as u64,
                Value::Null => 0,
                // A single value where a list is expected is a list of one.
                _ => 1,
            },
            Yield::UpdateMany => MAX_UPDATE_MANY as u64,
        }
    }

    fn selection_set(&mut self, type_name: &str, set: &SelectionSet) -> Cost {
        let mut cost = Cost::default();
        for selection in &set.items {
            if self.skipped(selection.node.directives()) {
                continue;
            }
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let Some(fc) = self.model.types.get(type_name).and_then(|t| t.get(field.name.node.as_str())) else {
                        continue;
                    };
                    let fc = fc.clone();
                    let n = self.records(field, fc.yields);
                    let below = match &fc.child {
                        Some(child) => self.selection_set(child, &field.selection_set.node),
                        None => Cost::default(),
                    };
                    let (rows, per_record) = match fc.yields {
                        Yield::Through => (0, 1),
                        Yield::Nothing => (0, 0),
                        _ => (n, n),
                    };
                    cost.add(Cost { rows, ..Cost::default() });
                    cost.add(below.times(per_record));
                    if fc.writes {
                        cost.add(match fc.yields {
                            Yield::UpdateMany => Cost { updates_by_filter: 1, ..Cost::default() },
                            Yield::Batch => Cost { written: n, ..Cost::default() },
                            _ => Cost { written: 1, ..Cost::default() },
                        });
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    cost.add(self.fragment(name));
                }
                Selection::InlineFragment(inline) => {
                    let inline = &inline.node;
                    let on = inline.type_condition.as_ref().map(|t| t.node.on.node.to_string());
                    cost.add(self.selection_set(on.as_deref().unwrap_or(type_name), &inline.selection_set.node));
                }
            }
        }
        cost
    }

    fn fragment(&mut self, name: &Name) -> Cost {
        if let Some(cost) = self.fragments.get(name) {
            return *cost;
        }
        let Some(definition) = self.document.fragments.get(name) else { return Cost::default() };
        if !self.open.insert(name.clone()) {
            return Cost::default();
        }
        let on = definition.node.type_condition.node.on.node.to_string();
        let cost = self.selection_set(&on, &definition.node.selection_set.node);
        self.open.remove(name);
        self.fragments.insert(name.clone(), cost);
        cost
    }
}

/// The operation a request runs: the one it names, or the document's only one.
fn operation<'a>(document: &'a ExecutableDocument, name: Option<&str>) -> Option<&'a Positioned<OperationDefinition>> {
    match (&document.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    }
}

fn budget_error(message: String, pos: Pos, limit: u64, requested: u64) -> ServerError {
    let mut error = ServerError::new(message, Some(pos));
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", "BAD_USER_INPUT");
    extensions.set("limit", limit);
    extensions.set("requested", requested);
    error.extensions = Some(extensions);
    error
}

impl CostModel {
    /// The request's refusal, if what it asks for is over a limit.
    fn check(&self, document: &ExecutableDocument, name: Option<&str>, variables: &Variables) -> Option<ServerError> {
        let op = operation(document, name)?;
        let root = match op.node.ty {
            OperationType::Query => "Query",
            OperationType::Mutation => "Mutation",
            OperationType::Subscription => return None,
        };
        let mut walk = Walk {
            model: self,
            document,
            operation: &op.node,
            variables,
            fragments: HashMap::new(),
            open: HashSet::new(),
        };
        let cost = walk.selection_set(root, &op.node.selection_set.node);
        if cost.written > self.max_written {
            return Some(budget_error(
                format!(
                    "at most {} records per batch, counted over all mutations of a request: this one writes {} \
                     (`--max-batch`)",
                    self.max_written, cost.written
                ),
                op.pos,
                self.max_written,
                cost.written,
            ));
        }
        if cost.updates_by_filter > 1 {
            return Some(budget_error(
                format!(
                    "at most one update by filter per request (each may change up to {MAX_UPDATE_MANY} records): \
                     this one has {}",
                    cost.updates_by_filter
                ),
                op.pos,
                1,
                cost.updates_by_filter,
            ));
        }
        if cost.rows > self.max_rows {
            return Some(budget_error(
                format!(
                    "this request could read up to {} records, over the limit of {} per request \
                     (`--max-request-rows`): ask for smaller pages (`first`) or fewer nested relations",
                    cost.rows, self.max_rows
                ),
                op.pos,
                self.max_rows,
                cost.rows,
            ));
        }
        None
    }
}

/// The extension that refuses a request over its budget once it has passed validation, before
/// any resolver runs.
pub struct RequestBudget(Arc<CostModel>);

impl RequestBudget {
    pub fn new(registry: &Registry, limits: &Limits) -> RequestBudget {
        RequestBudget(Arc::new(CostModel::new(registry, limits)))
    }
}

impl ExtensionFactory for RequestBudget {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(BudgetCheck { model: self.0.clone(), operation: OnceLock::new(), refusal: OnceLock::new() })
    }
}

/// One request's check: the operation it names is known when it is prepared, the document when
/// it is parsed; a refusal waits for validation, so that an invalid document gets its own error.
struct BudgetCheck {
    model: Arc<CostModel>,
    operation: OnceLock<Option<String>>,
    refusal: OnceLock<ServerError>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for BudgetCheck {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let _ = self.operation.set(request.operation_name.clone());
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let name = self.operation.get().and_then(|n| n.as_deref());
        if let Some(refusal) = self.model.check(&document, name, variables) {
            let _ = self.refusal.set(refusal);
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        match self.refusal.get() {
            Some(refusal) => Err(vec![refusal.clone()]),
            None => Ok(result),
        }
    }
}
