#!/usr/bin/env bash
# cs-pulse's end-to-end benchmark, one command: builds cs-pulse and the ceiling consumer
# (release), the Kafka Streams peer (Maven) and the Quix Streams peer's virtualenv
# (.cache/venv-bench), starts the local broker unless one is up, and runs bench/e2e.py,
# which prints the table. Arguments go to bench/e2e.py (see --help), e.g.
#   bash bench/run.sh --events 1000000 --accounts 2000 --no-latency
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building cs-pulse and the ceiling consumer (release)" >&2
cargo build --release --locked --bin cs-pulse --example ceiling >&2
echo "==> building the Kafka Streams peer" >&2
(cd bench/kstreams && mvn -q -B package dependency:copy-dependencies -DoutputDirectory=target/lib >&2)
venv=.cache/venv-bench
if ! "$venv/bin/python" -c 'import quixstreams, confluent_kafka' >/dev/null 2>&1; then
  echo "==> installing Quix Streams into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "quixstreams==3.28.1" >&2
fi

export KAFKA_PORT="${KAFKA_PORT:-19092}"
started_broker=""
if ! deploy/local/kafka.sh status >/dev/null 2>&1; then
  deploy/local/kafka.sh up >&2
  started_broker=1
  trap 'deploy/local/kafka.sh down >&2 || true' EXIT
fi
"$venv/bin/python" bench/e2e.py --bootstrap "127.0.0.1:$KAFKA_PORT" --python "$PWD/$venv/bin/python" "$@"
