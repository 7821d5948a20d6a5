#!/usr/bin/env bash
# Runs the whole test suite. PostgreSQL tests run too when TESSERA_TEST_POSTGRES names a server
# (e.g. postgres://postgres@127.0.0.1:5432); each test creates and drops its own database there.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets "$@"
