//! What the generated data API needs from the rest of the platform. The schema builder owns
//! these types; the store implements `RecordStore`.

use std::collections::HashMap;
use std::sync::Arc;

use tessera_metadata::{ADMIN_ROLE, AccessProfile, FieldIssue, Filter, ObjectDefinition, OrderKey, Registry, Value};

/// Who is calling, resolved from the bearer token, and what they may see and do.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub email: String,
    pub roles: Vec<String>,
    /// The union of the caller's roles; resolved per request against the current metadata.
    pub access: Arc<AccessProfile>,
    /// Whether the caller's team (them and everyone reporting to them) is so large that the store
    /// should read `TEAM`-scoped records by scanning rather than owner by owner.
    pub broad_team: bool,
    /// The request being served, as the sensitive access log records it.
    pub request_id: Option<String>,
    /// Set on writes made by scripts: the budget of the request that set them off and how
    /// deeply triggers are nested. `None` for a caller of the API (a fresh budget per call).
    pub chain: Option<tessera_plugins::Chain>,
    /// The searches of fields this caller sees masked made so far in the request; each request
    /// starts with its own (`Caller::for_request`).
    pub masked_searches: Arc<MaskedSearches>,
}

/// The values searched for in fields the caller sees masked during one request, per object and
/// field, across everything the request runs (lists, aggregates, relations, lookups, scripts):
/// the store caps their number per field and rate-limits and logs each new one. Values are kept
/// only as hashes under a key of this request.
#[derive(Debug, Default)]
pub struct MaskedSearches {
    pub(crate) seen: parking_lot::Mutex<MaskedSearchesSeen>,
}

#[derive(Debug, Default)]
pub(crate) struct MaskedSearchesSeen {
    pub(crate) values: HashMap<(String, String), std::collections::HashSet<u64>>,
    pub(crate) hasher: foldhash::fast::RandomState,
}

impl Caller {
    /// A caller with no access until `access` is resolved.
    pub fn new(user_id: String, email: String, roles: Vec<String>) -> Caller {
        let access = Arc::new(if roles.iter().any(|r| r == ADMIN_ROLE) {
            AccessProfile::Admin
        } else {
            AccessProfile::Restricted(Default::default())
        });
        Caller {
            user_id,
            email,
            roles,
            access,
            broad_team: false,
            request_id: None,
            chain: None,
            masked_searches: Arc::default(),
        }
    }

    /// This caller for one request with id `request_id`, with no searches counted yet (a
    /// resolved caller is cached across the requests of its token).
    pub fn for_request(self, request_id: String) -> Caller {
        Caller { request_id: Some(request_id), masked_searches: Arc::default(), ..self }
    }

    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ADMIN_ROLE)
    }
}

/// One record as read: system columns and the selected field columns, keyed by column.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub id: String,
    pub values: tessera_metadata::Values,
    /// Columns whose stored value could not be opened (a sensitive value that fails
    /// authentication): reported as an error for that value alone.
    pub broken: Vec<String>,
}

impl Record {
    pub fn get(&self, column: &str) -> &Value {
        self.values.get(column).unwrap_or(&Value::Null)
    }
}

/// Which page of a list to read.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub first: Option<u64>,
    pub after: Option<String>,
    pub last: Option<u64>,
    pub before: Option<String>,
}

/// A list read.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    /// Sort keys; `id` is always appended as the final key.
    pub order: Vec<OrderKey>,
    pub page: PageRequest,
    /// Field columns to read besides the system columns.
    pub columns: Vec<String>,
    pub with_total: bool,
}

/// One page of records with their keyset cursors.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub records: Vec<Record>,
    pub cursors: Vec<String>,
    pub has_next: bool,
    pub has_previous: bool,
    pub total: Option<i64>,
}

/// An aggregate function over one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateFn {
    Sum,
    Avg,
    Min,
    Max,
}

/// The result of one aggregate: a typed value for sums, minima and maxima (decimal sums stay
/// exact as scaled integers); averages as decimal strings with two digits more than the field.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregateValue {
    Value(Value),
    /// A decimal already formatted as a string: an average, or a sum too large for 64 bits.
    Decimal(String),
    /// A sum of whole numbers too large for 64 bits.
    OutOfRange,
}

/// Aggregates requested over a set of records.
#[derive(Debug, Clone, Default)]
pub struct AggregateQuery {
    pub filter: Option<Filter>,
    pub group_by: Vec<String>,
    pub aggregates: Vec<(AggregateFn, String)>,
    pub limit: u64,
}

/// One group (or the single whole-set row): its key values, count and aggregates.
#[derive(Debug, Clone, Default)]
pub struct AggregateRow {
    pub keys: HashMap<String, Value>,
    pub count: i64,
    pub values: HashMap<(AggregateFn, String), AggregateValue>,
}

/// Upsert instructions of a batch create.
#[derive(Debug, Clone, Default)]
pub struct Upsert {
    /// Api names of the fields identifying an existing record (a unique field).
    pub on_conflict: Vec<String>,
    /// Api names of the fields to overwrite on an existing record.
    pub update: Vec<String>,
}

/// Field values of one write, keyed by field api name, as JSON from the API.
pub type RecordInput = serde_json::Map<String, serde_json::Value>;

/// Errors of data operations, each with its stable API code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DataError {
    #[error("{message}")]
    BadInput { message: String, field_errors: Vec<FieldIssue> },
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict { message: String, field_errors: Vec<FieldIssue> },
    #[error("{0}")]
    Forbidden(String),
    #[error("the operation took too long")]
    Timeout,
    /// Something the operation needs is failing for now; the caller may try again shortly.
    #[error("{0}")]
    Unavailable(String),
    /// The caller did something more often than a limit allows; they may try again later.
    #[error("{0}")]
    RateLimited(String),
    #[error("internal error")]
    Internal,
}

impl DataError {
    pub fn bad_input(message: impl Into<String>) -> DataError {
        DataError::BadInput { message: message.into(), field_errors: Vec::new() }
    }

    pub fn invalid_fields(field_errors: Vec<FieldIssue>) -> DataError {
        DataError::BadInput { message: "invalid input".into(), field_errors }
    }
}

pub type DataResult<T> = Result<T, DataError>;

/// Reads and writes of records, used by the generated resolvers.
#[async_trait::async_trait]
pub trait RecordStore: Send + Sync {
    async fn get(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        id: &str,
        columns: &[String],
    ) -> DataResult<Option<Record>>;
    async fn list(&self, caller: &Caller, object: &ObjectDefinition, query: &ListQuery) -> DataResult<Page>;
    /// Records by id, in any order, skipping those missing or deleted.
    async fn load_many(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        ids: &[String],
        columns: &[String],
    ) -> DataResult<Vec<Record>>;
    /// For each parent id, the first `first` records of `object` whose `column` points at it.
    async fn load_related(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        column: &str,
        parents: &[String],
        query: &ListQuery,
    ) -> DataResult<HashMap<String, Page>>;
    async fn aggregate(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        query: &AggregateQuery,
    ) -> DataResult<Vec<AggregateRow>>;
    async fn create(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        inputs: Vec<RecordInput>,
        upsert: Option<Upsert>,
    ) -> DataResult<Vec<Record>>;
    async fn update(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        id: &str,
        input: RecordInput,
        expected_version: Option<i64>,
    ) -> DataResult<Record>;
    async fn update_many(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        filter: Option<Filter>,
        input: RecordInput,
    ) -> DataResult<Vec<Record>>;
    async fn delete(&self, caller: &Caller, object: &ObjectDefinition, id: &str) -> DataResult<Record>;
    async fn restore(&self, caller: &Caller, object: &ObjectDefinition, id: &str) -> DataResult<Record>;
    async fn destroy(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &ObjectDefinition,
        id: &str,
    ) -> DataResult<String>;

    /// Runs the `ACTION` script `action` of `object` on record `id` with `input`; returns the
    /// script's value.
    async fn run_action(
        &self,
        caller: &Caller,
        registry: &Arc<Registry>,
        object: &Arc<ObjectDefinition>,
        id: &str,
        action: &str,
        input: Option<serde_json::Value>,
    ) -> DataResult<serde_json::Value>;
}
