#!/usr/bin/env bash
# The whole cs-pulse test suite, from a fresh clone. It installs what it needs when it is
# missing (the build's tools and kcat, Chromium, Java and Maven for the broker, the Python clients of
# the interop tests in .cache/venv, and Debian's prometheus for the metrics and rules tests),
# starts a real Apache Kafka 4.x broker on
# 127.0.0.1 (deploy/local/kafka.sh, fetched through Maven into .cache/), checks formatting
# and lints, runs every test (unit, doc, golden replay, command line, mock cluster, and
# the tests against the real broker), and stops the broker even when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

need=()
# The build needs a C and C++ compiler, make, perl and cmake (librdkafka, OpenSSL, libcurl
# and zlib are built from source: no -dev packages). The tests need kcat, openssl (the
# local broker's certificates), Debian's prometheus and promtool (tests/prometheus.rs),
# Debian's chromium (the backtest report in a browser, tests/report_browser.rs), Java 17
# and Maven (the broker) and Python's venv (the interop clients).
for pkg in ca-certificates chromium cmake kcat openssl prometheus; do
  # "install ok installed": a removed package can leave its status (config files) behind
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
command -v cc >/dev/null && command -v c++ >/dev/null && command -v make >/dev/null || need+=(build-essential)
# OpenSSL's Configure needs modules that perl-base lacks
perl -MIPC::Cmd -MFindBin -MFile::Spec -e1 >/dev/null 2>&1 || need+=(perl)
command -v java >/dev/null || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need+=(maven)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3 python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing system packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # Install only: no service may start (Prometheus's would listen beyond loopback). The
  # tests start their own Prometheus on 127.0.0.1.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [ -n "$policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

# Avro interop: clients cs-pulse did not write (confluent-kafka's AvroSerializer, fastavro);
# PyYAML for the deployment files' consistency check (tests/deploy.rs); Playwright to drive
# Debian's Chromium on the account page (tests/report_browser.rs; it downloads no browser)
venv=.cache/venv
if ! "$venv/bin/python" -c 'import confluent_kafka.schema_registry.avro, fastavro, yaml, playwright.sync_api' >/dev/null 2>&1; then
  echo "==> installing the Python interop clients into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "confluent-kafka[avro,schemaregistry]==2.16.1" "fastavro==1.13.1" "pyyaml==6.0.3" "playwright==1.64.1"
fi
export CS_PULSE_TEST_PYTHON="$PWD/$venv/bin/python"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

export KAFKA_PORT="${KAFKA_PORT:-19092}"
echo "==> starting Apache Kafka on 127.0.0.1:$KAFKA_PORT"
trap 'deploy/local/kafka.sh down || true' EXIT
deploy/local/kafka.sh down >/dev/null 2>&1 || true
export CS_PULSE_TEST_BOOTSTRAP
CS_PULSE_TEST_BOOTSTRAP="$(deploy/local/kafka.sh up)"
# its SASL_SSL listener: address, SCRAM user, password (random per start) and CA file
# (captured first: `eval "$(cmd)"` would hide the command's failure from set -e)
sasl_env="$(deploy/local/kafka.sh sasl-env)"
eval "$sasl_env"

echo "==> cargo test (unit, golden, command line, mock cluster)"
cargo test --locked --lib --bins --tests
cargo test --locked --doc

echo "==> cargo test against the real broker at $CS_PULSE_TEST_BOOTSTRAP"
log=$(mktemp)
stamp=$(mktemp)
# When a test fails, what its cs-pulse processes logged as going wrong is printed last,
# where the end of a long output (a CI summary) still shows it. A failed test keeps its
# directory (${TMPDIR:-/tmp}/it-*), logs included.
digest() {
  local f
  while IFS= read -r f; do
    echo "==> $f: warnings and errors by message, then its last 12 lines"
    grep -E '^[^ ]+ +(WARN|ERROR) ' "$f" | sed -E 's/^[^ ]+ +//; s/\. .*$/./' | sort | uniq -c | sort -rn | head -n 15 || true
    tail -n 12 "$f" | cut -c1-300
  done < <(find "${TMPDIR:-/tmp}" -maxdepth 3 -path '*/it-*' -name '*.log' -newer "$stamp" 2>/dev/null)
}
broker_tests() {
  cargo test --locked --test "$1" -- --include-ignored "${@:2}" 2>&1 | tee -a "$log" || {
    digest
    exit 1
  }
}
broker_tests real_kafka
broker_tests real_kafka_avro
broker_tests real_kafka_hostile
broker_tests real_kafka_late
broker_tests real_kafka_secured
broker_tests real_kafka_api
broker_tests prometheus
cargo test --locked --test deploy -- --include-ignored
echo "==> the backtest report and the account page in headless Chromium"
cargo test --locked --test report_browser -- --include-ignored
# these restart the broker, so they run alone, after the others, one at a time
broker_tests real_kafka_broker_restart --test-threads 1
real=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$log" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s}')
rm -f "$log" "$stamp"
echo "==> ${real:-0} tests ran against the real Apache Kafka broker and Debian's Prometheus tools"
echo "==> all tests passed in $(( $(date +%s) - started )) s"
