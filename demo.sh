#!/usr/bin/env bash
# The built-in demo: stands up the reference deployment (Pebble with EAB, BIND hidden primary + 3 secondaries,
# delegation, resolvers) inside a private network namespace on this machine, then lets `renewd renew` issue
# certificates for three hosts and prints their subject and expiry. Needs root (network namespace, named).
set -euo pipefail
cd "$(dirname "$0")"
bash .ci/install-deps --demo
cargo build --release --locked --bin renewd --example demo
exec target/release/examples/demo "$@"
