#!/usr/bin/env bash
# bench/run.sh - side-by-side benchmark of kinto-rs against the reference Kinto (26.5.0 under
# uWSGI), same machine, same PostgreSQL, same workload, alternating, in one run.
#
# Usage: bench/run.sh [--duration 10s] [--rounds 1] [--scenarios S1,...,S9] [--out DIR]
#                     [--connections 32] [--records 10000] [--skip-ceilings]
#
# Starts PostgreSQL if needed, installs wrk and nginx-light if missing (apt-get), starts the
# reference (../shared/ref/reference-kinto.sh, processes = 2, port 8801) and kinto-rs
# (processes = 2, port 8811, database kinto_rs_bench), seeds both identically and runs
# ../shared/bench/workload.sh against each, alternating, then the ceilings (nginx `return 200`
# with 2 workers, pgbench single-row select/insert) and prints the comparison table
# (bench/compare.py) with a JSON copy. Everything targets 127.0.0.1 and is bounded in time.
# Environment: REF_VENV, REF_DIR (the reference's virtualenv and state folder, default bench/.ref-*).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${KINTO_SHARED:-$ROOT/../shared}"
DURATION=10s
ROUNDS=1
SCENARIOS="S1,S2,S3,S4,S5,S6,S7,S8,S9"
CONNS=32
RECORDS=10000
CEILINGS=1
OUT="$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)"
RS_PORT=8811
REF_PORT=8801

while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --scenarios) SCENARIOS="$2"; shift 2 ;;
        --connections) CONNS="$2"; shift 2 ;;
        --records) RECORDS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --skip-ceilings) CEILINGS=0; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done

log() { printf '==> %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

[ -x "$SHARED/bench/workload.sh" ] || die "shared benchmark not found at $SHARED/bench"
missing=()
for tool in wrk nginx pgbench curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    log "Installing wrk nginx-light (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "Starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
fi

mkdir -p "$OUT"
STATE="$OUT/state"
mkdir -p "$STATE"

log "Building kinto-rs (release)"
(cd "$ROOT" && cargo build --release --quiet)
BIN="$ROOT/target/release/kinto"

log "Starting the reference Kinto (uWSGI, 2 processes, port $REF_PORT)"
(cd "$ROOT/bench" && "$SHARED/ref/reference-kinto.sh" start --port "$REF_PORT" --processes 2 \
    --venv "${REF_VENV:-$ROOT/bench/.ref-venv}" --dir "${REF_DIR:-$ROOT/bench/.ref-kinto}") >"$OUT/reference-start.log" 2>&1 \
    || { tail -20 "$OUT/reference-start.log"; die "reference Kinto did not start"; }
REF_PIDFILE="${REF_DIR:-$ROOT/bench/.ref-kinto}/uwsgi.pid"

log "Starting kinto-rs (2 processes, port $RS_PORT, database kinto_rs_bench)"
psql -q -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'kinto_rs_bench'" \
    | grep -q 1 || psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE kinto_rs_bench"
PG_URL="postgresql://postgres@127.0.0.1:5432/kinto_rs_bench"
cat >"$STATE/kinto-rs.ini" <<INI
[app:main]
kinto.includes = kinto.plugins.default_bucket
                 kinto.plugins.accounts
                 kinto.plugins.flush
kinto.storage_backend = kinto.core.storage.postgresql
kinto.storage_url = $PG_URL
kinto.cache_backend = kinto.core.cache.postgresql
kinto.cache_url = $PG_URL
kinto.permission_backend = kinto.core.permission.postgresql
kinto.permission_url = $PG_URL
kinto.storage_pool_size = 50
kinto.cache_pool_size = 50
kinto.permission_pool_size = 50
kinto.batch_max_requests = 25
kinto.userid_hmac_secret = bench-secret
multiauth.policies = account basicauth
multiauth.policy.account.use = kinto.plugins.accounts.AccountsPolicy
kinto.account_create_principals = system.Everyone
kinto.account_write_principals = account:admin
kinto.bucket_create_principals = system.Authenticated

[uwsgi]
http11-socket = 127.0.0.1:$RS_PORT
processes = 2
master = true
harakiri = 120
lazy = true
buffer-size = 65535
post-buffering = 65535
disable-logging = true
pidfile = $STATE/kinto-rs.pid

[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARNING
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic
[formatter_generic]
format = %(asctime)s %(levelname)-5.5s [%(name)s] %(message)s
INI
"$BIN" --ini "$STATE/kinto-rs.ini" migrate >"$OUT/kinto-rs-migrate.log" 2>&1 \
    || { cat "$OUT/kinto-rs-migrate.log"; die "kinto migrate failed"; }
"$BIN" --ini "$STATE/kinto-rs.ini" >"$OUT/kinto-rs.log" 2>&1 &
RS_MASTER=$!
trap 'kill -TERM $RS_MASTER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$RS_PORT/v1/" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$RS_PORT/v1/" || { tail -20 "$OUT/kinto-rs.log"; die "kinto-rs did not start"; }

common=(--duration "$DURATION" --connections "$CONNS" --records "$RECORDS" --db-pattern '^postgres: '
        --out "$OUT/workload.tsv")
# Seed both servers identically (workload.sh's own seeding, with a 1 s throwaway S1), then
# VACUUM ANALYZE both databases, as autovacuum would soon do on its own: a freshly seeded table
# is otherwise planned as if it were empty, and until a vacuum sets its visibility map the
# planner prices index-only and bitmap scans (the GIN filter index) too high.
"$SHARED/bench/workload.sh" --url "http://127.0.0.1:$REF_PORT/v1" --records "$RECORDS" \
    --scenarios S1 --duration 1s --warmup 0 | tee -a "$OUT/seed.log"
"$SHARED/bench/workload.sh" --url "http://127.0.0.1:$RS_PORT/v1" --records "$RECORDS" \
    --scenarios S1 --duration 1s --warmup 0 | tee -a "$OUT/seed.log"
ref_db="$(sed -n 's#^kinto.storage_url = ##p' "${REF_DIR:-$ROOT/bench/.ref-kinto}/kinto.ini")"
psql -q "$ref_db" -c "VACUUM ANALYZE"
psql -q "$PG_URL" -c "VACUUM ANALYZE"

for round in $(seq 1 "$ROUNDS"); do
    for s in ${SCENARIOS//,/ }; do
        # Alternate the two servers scenario by scenario, so that machine noise hits both alike.
        "$SHARED/bench/workload.sh" --url "http://127.0.0.1:$REF_PORT/v1" --label "kinto-uwsgi-r$round" \
            --server-pid-file "$REF_PIDFILE" --scenarios "$s" --no-seed --no-flush "${common[@]}" \
            | tee -a "$OUT/workload.log"
        "$SHARED/bench/workload.sh" --url "http://127.0.0.1:$RS_PORT/v1" --label "kinto-rs-r$round" \
            --server-pid-file "$STATE/kinto-rs.pid" --scenarios "$s" --no-seed --no-flush "${common[@]}" \
            | tee -a "$OUT/workload.log"
    done
done

if [ "$CEILINGS" = 1 ]; then
    log "Ceilings: nginx return 200 (2 workers) and pgbench"
    (cd "$STATE" && "$SHARED/bench/ceilings.sh" nginx --duration "${DURATION%s}" --connections "$CONNS" \
        --out "$OUT/ceilings.tsv") | tee -a "$OUT/ceilings.log" || true
    (cd "$STATE" && "$SHARED/bench/ceilings.sh" pgbench --duration "${DURATION%s}" --connections "$CONNS" \
        --out "$OUT/ceilings.tsv") | tee -a "$OUT/ceilings.log" || true
fi

"$HERE/compare.py" "$OUT/workload.tsv" ${CEILINGS:+"$OUT/ceilings.tsv"} --json "$OUT/summary.json" \
    | tee "$OUT/summary.md"
log "Results in $OUT"
