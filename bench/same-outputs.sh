#!/usr/bin/env bash
# Do two cs-pulse binaries give the same outputs? Runs `replay` with each over the same
# inputs and compares the files byte for byte:
#   - the demo scenario (`gen --no-kafka --ndjson-dir`, seed 42, 60 days);
#   - every golden case in tests/golden, with its config;
#   - 1,000,000 synthetic events (`gen --events 1000000`).
# Alerts, scores and dead letters are compared, and what replay prints (its summary). The only
# field rewritten before comparing is the alerts' `emitted_at`: the wall clock at which
# each alert fired, which differs between any two runs.
#
# Usage: bash bench/same-outputs.sh OLD_BINARY NEW_BINARY [WORK_DIR]
# The inputs are generated once, by OLD_BINARY, into WORK_DIR (default
# .cache/same-outputs), and replayed by both. Exit 0 when every output is identical.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
old="$(realpath "$1")"
new="$(realpath "$2")"
work="${3:-.cache/same-outputs}"
rm -rf "$work"
mkdir -p "$work"

echo "==> generating inputs with $old" >&2
"$old" gen --no-kafka --ndjson-dir "$work/in/demo" --seed 42 --days 60 >/dev/null
"$old" gen --no-kafka --ndjson-dir "$work/in/million" --seed 7 --accounts 200 --days 60 --events 1000000 >/dev/null
for d in tests/golden/*/; do
  name="$(basename "$d")"
  mkdir -p "$work/in/golden-$name"
  cp "$d"/*.ndjson "$d/config.toml" "$work/in/golden-$name/"
  rm -f "$work/in/golden-$name"/expected_*.ndjson
done

failed=0
for case_dir in "$work"/in/*/; do
  case="$(basename "$case_dir")"
  for which in old new; do
    bin="$old"; [ "$which" = new ] && bin="$new"
    out="$work/out/$case/$which"
    mkdir -p "$out"
    args=(replay --out "$out/alerts.ndjson" --scores "$out/scores.ndjson" --deadletter "$out/deadletter.ndjson")
    for input in usage support accounts teams; do
      [ -f "$case_dir/$input.ndjson" ] && args+=("--$input" "$case_dir/$input.ndjson")
    done
    [ -f "$case_dir/config.toml" ] && args+=(--config "$case_dir/config.toml")
    start=$(date +%s.%N)
    "$bin" "${args[@]}" >"$out/stdout.txt" 2>"$out/stderr.txt"
    end=$(date +%s.%N)
    sed -i -E 's/"emitted_at":-?[0-9]+/"emitted_at":0/' "$out/alerts.ndjson"
    printf '%-22s %-3s %6.2f s\n' "$case" "$which" "$(echo "$end - $start" | bc)" >&2
  done
  for f in alerts.ndjson scores.ndjson deadletter.ndjson stdout.txt stderr.txt; do
    a="$work/out/$case/old/$f" b="$work/out/$case/new/$f"
    if cmp -s "$a" "$b"; then
      printf 'same       %-22s %-16s %9d lines  sha256 %s\n' "$case" "$f" "$(wc -l <"$a")" "$(sha256sum "$a" | cut -c1-16)"
    else
      printf 'DIFFERENT  %-22s %-16s\n' "$case" "$f"
      failed=1
    fi
  done
done
exit "$failed"
