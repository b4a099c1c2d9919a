#!/usr/bin/env bash
# The whole cs-pulse test suite, from a fresh clone: installs the build's system packages
# when they are missing, then checks formatting and lints, and runs every test (unit,
# doc, golden replay, command line, and the pipeline on the in-process mock cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in cmake libssl-dev libcurl4-openssl-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing system packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

started=$(date +%s)
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "==> cargo test"
cargo test --locked --all-targets
cargo test --locked --doc
echo "==> all tests passed in $(( $(date +%s) - started )) s"
