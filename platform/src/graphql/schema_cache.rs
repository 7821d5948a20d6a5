//! Data schemas generated per caller view, cached per effective access within one metadata
//! snapshot and bounded, so a thousand users with the same roles share one schema and a change
//! of metadata (a new snapshot, a new cache) never serves a stale one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::dynamic::{Schema, SchemaError};
use tessera_metadata::AccessProfile;

/// Distinct views kept at once; building one again costs a few milliseconds.
const CAPACITY: usize = 64;

#[derive(Default)]
pub struct SchemaCache {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    schemas: HashMap<Arc<AccessProfile>, (Schema, u64)>,
    tick: u64,
}

impl SchemaCache {
    /// The cached schema of this view, or one built now (outside the lock) and kept, evicting
    /// the least recently used when full.
    pub fn get_or_build(
        &self,
        access: &Arc<AccessProfile>,
        build: impl FnOnce() -> Result<Schema, SchemaError>,
    ) -> Result<Schema, SchemaError> {
        if let Ok(mut e) = self.entries.lock() {
            e.tick += 1;
            let tick = e.tick;
            if let Some((schema, used)) = e.schemas.get_mut(access) {
                *used = tick;
                return Ok(schema.clone());
            }
        }
        let schema = build()?;
        if let Ok(mut e) = self.entries.lock() {
            if e.schemas.len() >= CAPACITY
                && let Some(oldest) = e.schemas.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone())
            {
                e.schemas.remove(&oldest);
            }
            let tick = e.tick;
            e.schemas.insert(access.clone(), (schema.clone(), tick));
        }
        Ok(schema)
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.schemas.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
