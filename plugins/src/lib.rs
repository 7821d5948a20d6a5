//! The Rhai script host (sandbox, limits, host-API trait) and the bundled templates. Scripts
//! arrive with the scripting issue; until then this crate only fixes its place in the
//! dependency order `metadata` ← `plugins` ← `platform`.

// Refuses to compile when a crate in the build strips rhai of what the script host needs:
// cargo unifies features, so one dependency turning on rhai's `only_i32`, `no_float`,
// `no_function` or `unchecked` changes rhai for us too (casbin does; hence the casbin patch in
// the workspace manifest). `tests/rhai_capabilities.rs` checks the same at run time.
const _: () = {
    let _: fn(rhai::INT) -> i64 = |x| x;
    let _: fn(rhai::FLOAT) -> f64 = |x| x;
    let _ = rhai::Engine::set_max_operations;
    let _ = rhai::CallFnOptions::new;
};
