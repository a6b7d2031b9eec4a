#!/usr/bin/env bash
# Runs every test. Provisions what the tests need: a PostgreSQL server on 127.0.0.1:5432 with
# trust authentication. Fails loudly when it cannot be had; never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ! command -v pg_isready >/dev/null 2>&1; then
  echo "test.sh: installing PostgreSQL (apt-get)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if ! pg_ready; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    echo "test.sh: no PostgreSQL cluster found under /etc/postgresql" >&2
    exit 1
  fi
  echo "test.sh: starting PostgreSQL $version" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
fi
pg_ready || { echo "test.sh: PostgreSQL is not answering on 127.0.0.1:5432" >&2; exit 1; }

export KINTO_TEST_PG_URL="${KINTO_TEST_PG_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
