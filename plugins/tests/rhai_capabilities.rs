//! The script host needs rhai with its sandbox limits, floats, 64-bit integers and script
//! functions. A dependency that turns on rhai's `unchecked`, `no_float`, `only_i32` or
//! `no_function` features removes them for the whole build (cargo unifies features); these
//! tests then fail to compile or fail (see the casbin patch in the workspace manifest). Features
//! unify per build, so this catches it in a workspace run (`scripts/test.sh`); a build of this
//! crate alone has no casbin in it, and the guard in `src/lib.rs` covers every build that does.

use rhai::{Engine, EvalAltResult, FLOAT, INT};

// `only_i32` makes `INT` an i32 and `no_float` removes `FLOAT`: neither compiles then.
const _: fn(INT) -> i64 = |x| x;
const _: fn(FLOAT) -> f64 = |x| x;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn stops_a_runaway_loop_at_the_operation_limit() {
    let mut engine = Engine::new();
    // These setters do not exist under `unchecked`.
    engine.set_max_operations(10_000);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_string_size(1 << 16);
    let err = engine.run("let x = 0; loop { x += 1; }").unwrap_err();
    assert!(matches!(*err, EvalAltResult::ErrorTooManyOperations(_)), "unexpected error: {err}");
}

#[test]
fn computes_in_floating_point() {
    let sum: f64 = Engine::new().eval("0.1 + 0.2").unwrap();
    assert!((sum - 0.3).abs() < 1e-12, "0.1 + 0.2 = {sum}");
}

#[test]
fn computes_with_64_bit_integers() {
    let product: INT = Engine::new().eval("4_000_000_000 * 2").unwrap();
    assert_eq!(product, 8_000_000_000_i64);
}

#[test]
fn runs_functions_defined_in_the_script() {
    let answer: INT = Engine::new().eval("fn double(x) { x * 2 } double(21)").unwrap();
    assert_eq!(answer, 42);
}

#[test]
fn shares_an_engine_across_threads() {
    assert_send_sync::<Engine>();
}
