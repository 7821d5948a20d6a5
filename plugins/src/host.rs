//! The host API: how `AFTER_SAVE` and `ACTION` scripts reach records. The platform implements
//! it with every call checked against the calling user's permissions.

use std::sync::Arc;

use tessera_metadata::ObjectDefinition;

use crate::Row;

/// A record returned by the host: its object's definition (to turn columns into script values)
/// and its row as the caller may read it (hidden fields absent, masked ones masked).
#[derive(Debug, Clone)]
pub struct HostRecord {
    pub object: Arc<ObjectDefinition>,
    pub id: String,
    pub row: Row,
}

/// Why a host call failed, in words for the script author (`FORBIDDEN: …`, `BAD_USER_INPUT: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HostError {
    /// The API error code (`FORBIDDEN`, `BAD_USER_INPUT`, `NOT_FOUND`, `CONFLICT`, …).
    pub code: String,
    pub message: String,
}

/// Record access for scripts. Calls are synchronous: scripts run on a blocking thread and the
/// platform's implementation waits for the store there. Budgets are counted by the script host
/// before and after each call; the host only checks permissions and performs the call.
pub trait Host: Send + Sync {
    /// Up to `limit` records of `object` matching `filter`: a JSON object whose keys are field
    /// api names (or `id`) and whose values are either a value (equality) or an object of API
    /// filter operators (`{"gt": "100.00"}`, `{"in": [...]}`, `{"isNull": true}`, ...).
    fn find(&self, object: &str, filter: &serde_json::Value, limit: usize) -> Result<Vec<HostRecord>, HostError>;

    /// Creates a record from API values keyed by field api name (decimals as strings, dates
    /// as ISO strings, lookups as ids, multi-picklists as arrays), through the whole record
    /// pipeline of the target object (its own scripts included, one level deeper).
    fn create(&self, object: &str, values: serde_json::Map<String, serde_json::Value>)
    -> Result<HostRecord, HostError>;

    /// Updates fields of a record, as `create` does.
    fn update(
        &self,
        object: &str,
        id: &str,
        values: serde_json::Map<String, serde_json::Value>,
    ) -> Result<HostRecord, HostError>;
}
