#!/usr/bin/env bash
# The HTTP API under load (bench/api.py): builds cs-pulse in release, starts the local
# broker unless one is up, and prints the table. Arguments go to bench/api.py (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> building cs-pulse (release)" >&2
cargo build --release --locked --bin cs-pulse >&2
venv=.cache/venv
if ! "$venv/bin/python" -c 'import confluent_kafka' >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "confluent-kafka==2.16.1" >&2
fi
export KAFKA_PORT="${KAFKA_PORT:-19092}"
if ! deploy/local/kafka.sh status >/dev/null 2>&1; then
  deploy/local/kafka.sh up >&2
  trap 'deploy/local/kafka.sh down >&2 || true' EXIT
fi
"$venv/bin/python" bench/api.py --bootstrap "127.0.0.1:$KAFKA_PORT" "$@"
