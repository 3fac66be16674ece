#!/usr/bin/env bash
# The same sync with dlt (https://dlthub.com): sql_database source -> a custom
# destination that POSTs batches, in retl's batch format, to the same sink.
# Installs pinned dlt 1.31.0, connectorx and pyarrow into a virtual
# environment of its own (target/dlt-venv, created on first use;
# RETL_DLT_VENV overrides).
#
#   benches/dlt/run.sh POSTGRES_URL SCHEMA.TABLE SINK_URL [BACKEND [BATCH]]
#
# BACKEND: sqlalchemy (dlt's default) or connectorx; BATCH: rows per request
# (default 1000). Prints `DLT_RESULT {...}` (see pipeline.py).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
url=$1 table=$2 sink=$3 backend=${4:-sqlalchemy} batch=${5:-1000}
venv="${RETL_DLT_VENV:-$here/../../target/dlt-venv}"
packages=("dlt[sql_database]==1.31.0" "psycopg2-binary==2.9.13" "requests==2.34.2" "connectorx==0.4.6" "pyarrow==26.0.1")
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '
import dlt, sqlalchemy, psycopg2, requests, connectorx, pyarrow, orjson
assert dlt.__version__ == "1.31.0"' 2>/dev/null; then
  echo "dlt: creating $venv and installing ${packages[*]} (once)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q "${packages[@]}" >/dev/null
fi
# SQLAlchemy wants postgresql+psycopg2:// URLs (dlt derives connectorx's own from it).
sa_url="postgresql+psycopg2://${url#*://}"
data="$(mktemp -d)"
trap 'rm -rf "$data"' EXIT
DLT_DATA_DIR="$data" RUNTIME__LOG_LEVEL=WARNING \
  "$venv/bin/python" "$here/pipeline.py" "$sa_url" "$table" "$sink" "$backend" "$batch"
