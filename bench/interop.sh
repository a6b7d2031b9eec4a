#!/usr/bin/env bash
# bench/interop.sh - the reference Kinto (26.5.0 under uWSGI) and kinto-rs on ONE PostgreSQL
# database: data written through each is read back identically through the other
# (bench/interop.py). Starts the reference with ../shared/ref/reference-kinto.sh (port 8801),
# then kinto-rs on port 8812 with the reference's database and userid_hmac_secret.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${KINTO_SHARED:-$ROOT/../shared}"
STATE="${REF_DIR:-$ROOT/bench/.ref-kinto}"
(cd "$ROOT/bench" && "$SHARED/ref/reference-kinto.sh" start --port 8801 --processes 2 \
    --venv "${REF_VENV:-$ROOT/bench/.ref-venv}" --dir "$STATE") >/dev/null
(cd "$ROOT" && cargo build --release --quiet)
secret="$(sed -n 's/^kinto.userid_hmac_secret = //p' "$STATE/kinto.ini")"
url="$(sed -n 's/^kinto.storage_url = //p' "$STATE/kinto.ini")"
tmp="$(mktemp -d)"
trap 'kill -INT "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
cat >"$tmp/interop.ini" <<INI
[app:main]
kinto.includes = kinto.plugins.default_bucket
                 kinto.plugins.accounts
                 kinto.plugins.flush
kinto.storage_backend = kinto.core.storage.postgresql
kinto.storage_url = $url
kinto.cache_backend = kinto.core.cache.postgresql
kinto.cache_url = $url
kinto.permission_backend = kinto.core.permission.postgresql
kinto.permission_url = $url
kinto.userid_hmac_secret = $secret
multiauth.policies = account basicauth
multiauth.policy.account.use = kinto.plugins.accounts.AccountsPolicy
kinto.account_create_principals = system.Everyone
kinto.account_write_principals = account:admin
kinto.bucket_create_principals = system.Authenticated

[uwsgi]
http-socket = 127.0.0.1:8812
processes = 2
disable-logging = true
INI
"$ROOT/target/release/kinto" --ini "$tmp/interop.ini" migrate
"$ROOT/target/release/kinto" --ini "$tmp/interop.ini" 2>"$tmp/kinto.log" &
pid=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:8812/v1/ && break; sleep 0.1; done
"$HERE/interop.py" --ref http://127.0.0.1:8801/v1 --rs http://127.0.0.1:8812/v1
