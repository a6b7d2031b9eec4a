#!/usr/bin/env bash
# Startup time to the first answered request: starts the kinto binary on an ini in a temporary
# directory (SQLite backends, `http-socket = 127.0.0.1:0`), reads the port from the
# "(port auto-assigned)" line and times from exec until `GET /v1/` answers 200. Repeats RUNS
# times and prints each figure and the median, in milliseconds.
#
#   scripts/startup-time.sh [BINARY] [RUNS]     (default: target/release/kinto, 5 runs)
set -euo pipefail
cd "$(dirname "$0")/.."

binary="${1:-${CARGO_TARGET_DIR:-target}/release/kinto}"
runs="${2:-5}"
processes="${PROCESSES:-1}"
[ -x "$binary" ] || { echo "startup-time.sh: no executable at $binary (cargo build --release)" >&2; exit 1; }
command -v curl >/dev/null || { echo "startup-time.sh: curl is needed" >&2; exit 1; }

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/kinto.ini" <<EOF
[app:main]
kinto.storage_backend = sqlite
kinto.storage_url = sqlite:///kinto.db
kinto.permission_backend = sqlite
kinto.permission_url = sqlite:///kinto.db
kinto.cache_backend = sqlite
kinto.cache_url = sqlite:///kinto.db
kinto.userid_hmac_secret = startup-time

[uwsgi]
http-socket = 127.0.0.1:0
processes = $processes
master = true
EOF

now_ms() { date +%s%3N; }
figures=()
for run in $(seq 1 "$runs"); do
  rm -f "$work"/kinto.db*
  # Created here: the background child opens its redirection asynchronously.
  : > "$work/log"
  start=$(now_ms)
  "$binary" --ini "$work/kinto.ini" 2> "$work/log" &
  pid=$!
  port=""
  answered=""
  while [ -z "$answered" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "startup-time.sh: kinto exited:" >&2; cat "$work/log" >&2; exit 1; }
    if [ -z "$port" ]; then
      port=$(sed -n 's/.*bound to TCP address 127\.0\.0\.1:\([0-9]*\) (port auto-assigned).*/\1/p' "$work/log" | head -n 1 || true)
    fi
    if [ -n "$port" ] && curl -fs -o /dev/null "http://127.0.0.1:$port/v1/"; then
      answered=$(now_ms)
    fi
    [ $(( $(now_ms) - start )) -lt 30000 ] || { echo "startup-time.sh: no answer within 30 s" >&2; exit 1; }
  done
  figures+=($(( answered - start )))
  echo "run $run: $(( answered - start )) ms"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done
sorted=($(printf '%s\n' "${figures[@]}" | sort -n))
echo "median: ${sorted[$(( ${#sorted[@]} / 2 ))]} ms (binary $(du -h "$binary" | cut -f1), $runs runs, processes = $processes)"
