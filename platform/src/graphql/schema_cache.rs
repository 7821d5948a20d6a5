//! Data schemas generated per caller view, cached per effective access within one metadata
//! snapshot and bounded, so a thousand users with the same roles share one schema and a change
//! of metadata (a new snapshot, a new cache) never serves a stale one.

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
    /// (view, its schema, last use). Few entries, so a scan beats hashing a whole profile on
    /// every request.
    views: Vec<(Arc<AccessProfile>, Schema, u64)>,
    tick: u64,
}

impl Entries {
    /// The entry of this view: by pointer first (the access service hands out one `Arc` per
    /// profile), then by content, adopting the new `Arc` so the next lookup is by pointer.
    fn find(&mut self, access: &Arc<AccessProfile>) -> Option<Schema> {
        self.tick += 1;
        let tick = self.tick;
        let entry = match self.views.iter().position(|(a, ..)| Arc::ptr_eq(a, access)) {
            Some(i) => &mut self.views[i],
            None => {
                let i = self.views.iter().position(|(a, ..)| **a == **access)?;
                let entry = &mut self.views[i];
                entry.0 = access.clone();
                entry
            }
        };
        entry.2 = tick;
        Some(entry.1.clone())
    }
}

impl SchemaCache {
    /// The cached schema of this view, or one built now (outside the lock) and kept, evicting
    /// the least recently used when full.
    pub fn get_or_build(
        &self,
        access: &Arc<AccessProfile>,
        build: impl FnOnce() -> Result<Schema, SchemaError>,
    ) -> Result<Schema, SchemaError> {
        if let Some(schema) = self.entries.lock().ok().and_then(|mut e| e.find(access)) {
            return Ok(schema);
        }
        let schema = build()?;
        if let Ok(mut e) = self.entries.lock() {
            // Another request may have built the same view meanwhile: keep one.
            if let Some(existing) = e.find(access) {
                return Ok(existing);
            }
            if e.views.len() >= CAPACITY
                && let Some(oldest) = e.views.iter().enumerate().min_by_key(|(_, v)| v.2).map(|(i, _)| i)
            {
                e.views.swap_remove(oldest);
            }
            let tick = e.tick;
            e.views.push((access.clone(), schema.clone(), tick));
        }
        Ok(schema)
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.views.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
