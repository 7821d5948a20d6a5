//! The Rhai script host (sandbox, limits, host-API trait) and the bundled templates. Scripts
//! arrive with the scripting issue; until then this crate only fixes its place in the
//! dependency order `metadata` ← `plugins` ← `platform`.
