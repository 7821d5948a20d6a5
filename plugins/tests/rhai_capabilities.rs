//! The script host needs rhai with its sandbox limits, 64-bit integers, script functions and
//! exact decimals (floats are off: fractional literals are `Decimal`s). A dependency that turns
//! on rhai's `unchecked`, `only_i32` or `no_function` features, or drops `decimal`, changes
//! rhai for the whole build (cargo unifies features); these tests then fail to compile or fail
//! (see the casbin patch in the workspace manifest). Features unify per build, so this catches
//! it in a workspace run (`scripts/test.sh`); a build of this crate alone has no casbin in it,
//! and the guard in `src/lib.rs` covers every build that does.

use rhai::{Dynamic, Engine, EvalAltResult, INT};
use rust_decimal::Decimal;

// `only_i32` makes `INT` an i32: this does not compile then.
const _: fn(INT) -> i64 = |x| x;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn stops_a_runaway_loop_at_the_operation_limit() {
    let mut engine = Engine::new();
    // These setters do not exist under `unchecked`.
    engine.set_max_operations(10_000);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_string_size(1 << 16);
    engine.set_max_array_size(100);
    engine.set_max_map_size(100);
    engine.set_max_call_levels(16);
    let err = engine.run("let x = 0; loop { x += 1; }").unwrap_err();
    assert!(matches!(*err, EvalAltResult::ErrorTooManyOperations(_)), "unexpected error: {err}");
}

#[test]
fn computes_fractions_as_exact_decimals() {
    let engine = Engine::new();
    assert!(engine.eval::<bool>("0.1 + 0.2 == 0.3").unwrap());
    let sum: Dynamic = engine.eval("0.1 + 0.2").unwrap();
    assert!(sum.is::<Decimal>(), "0.1 + 0.2 is a {}", sum.type_name());
    assert_eq!(sum.as_decimal().unwrap(), Decimal::new(3, 1));
}

#[test]
fn mixes_integers_and_decimals() {
    let engine = Engine::new();
    let product: Decimal = engine.eval("1.25 * 4").unwrap();
    assert_eq!(product, Decimal::new(500, 2));
    assert!(engine.eval::<bool>("2 > 1.5 && 1.5 < 2 && 2 == 2.0").unwrap());
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
    assert_send_sync::<rhai::AST>();
}
