#!/usr/bin/env bash
# The long fault and hostile-input runs of issue 7 (loopback only, bounded in time), built on the
# same tests CI runs quickly (tests/faults_*.rs, tests/hostile_*.rs), with longer durations:
#
#   scripts/chaos.sh faults   # ~3 min: SIGKILL a worker every second for 30 s, SIGHUP every 2 s
#                             # for 30 s, PostgreSQL stopped for 10 s, slowloris with 200 slow
#                             # clients on 3 workers, If-Match races, hostile HTTP and API
#   scripts/chaos.sh fuzz     # 2 x 10 min (nightly): the HTTP request parser and the
#                             # querystring/filter parser, coverage-guided (libFuzzer)
#   scripts/chaos.sh          # both
#
# Figures (requests sent, failed, writes acknowledged, writes found, recovery times) are the
# lines the tests print; they are collected in $CHAOS_OUT (default target/chaos-figures.txt).
# Needs root (private PostgreSQL cluster as the `postgres` user, privilege tests) and the shared
# PostgreSQL on 127.0.0.1:5432 (see scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
out="${CHAOS_OUT:-${CARGO_TARGET_DIR:-target}/chaos-figures.txt}"
mkdir -p "$(dirname "$out")"
: >"$out"

faults() {
  export CHAOS_KILL_SECS="${CHAOS_KILL_SECS:-30}"
  export CHAOS_RELOAD_SECS="${CHAOS_RELOAD_SECS:-30}"
  export CHAOS_OUTAGE_SECS="${CHAOS_OUTAGE_SECS:-10}"
  export CHAOS_SLOW_CLIENTS="${CHAOS_SLOW_CLIENTS:-200}"
  export CHAOS_SLOW_SECS="${CHAOS_SLOW_SECS:-25}"
  # Debug build by default (the one CI already has); CHAOS_RELEASE=1 for optimised figures.
  cargo test ${CHAOS_RELEASE:+--release} \
    --test faults_workers --test faults_database --test faults_concurrency \
    --test faults_privileges --test hostile_http --test hostile_api \
    -- --nocapture --test-threads=1 2>&1 | tee -a "$out.log" |
    sed -E 's/^test [a-z0-9_]+ \.\.\. //' | grep -E '^(sigkill|harakiri|stuck x6|sighup|db outage|no free connection|if-match|privileges|hostile|json edge|slowloris|  |test result|FAILED)' |
    tee -a "$out"
  # The test harness' exit status is lost in the pipe: fail if any test failed.
  ! grep -q 'FAILED' "$out"
}

fuzz_one() { # <dir> <target> <seed corpus dir> <seconds>
  local dir=$1 target=$2 seeds=$3 seconds=$4
  local flags="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
  (cd "$dir" && RUSTFLAGS="$flags" cargo +nightly build --release \
    --target x86_64-unknown-linux-gnu --bin "$target")
  local work
  work=$(mktemp -d)
  cp -r "$seeds"/. "$work"/
  local bin="${CARGO_TARGET_DIR:-$PWD/$dir/target}/x86_64-unknown-linux-gnu/release/$target"
  local artifacts
  artifacts="$(cd "$(dirname "$out")" && pwd)/fuzz-$target-"
  echo "fuzz $target: $seconds s from $(ls "$work" | wc -l) seeds" | tee -a "$out"
  (cd "$work" && "$bin" -max_len=8192 -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$artifacts" "$work") \
    2>&1 | tee -a "$out.log" | grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done|==[0-9]+== ERROR|SUMMARY)' |
    sed "s/^/fuzz $target: /" | tee -a "$out"
  rm -rf "$work"
}

fuzz() {
  local seconds="${CHAOS_FUZZ_SECS:-600}"
  # The worker's target reads two limit bytes before the request (see worker/fuzz/README.md).
  local seeds
  seeds=$(mktemp -d)
  for f in worker/corpus/valid/* worker/corpus/invalid/*; do
    (printf '\xf0\x77'; cat "$f") >"$seeds/$(basename "$f")"
  done
  fuzz_one worker/fuzz head "$seeds" "$seconds"
  rm -rf "$seeds"
  fuzz_one fuzz querystring "$PWD/fuzz/corpus/querystring" "$seconds"
}

case "$what" in
  faults) faults ;;
  fuzz) fuzz ;;
  all) faults; fuzz ;;
  *) echo "usage: $0 [faults|fuzz|all]" >&2; exit 2 ;;
esac
echo "figures: $out"
