#!/usr/bin/env bash
# The same sync with dlt (https://dlthub.com): sql_database source -> a custom
# destination that POSTs batches of 500 records, in retl's batch format, to
# the same sink. Installs dlt into a virtual environment of its own
# (target/dlt-venv, created on first use; RETL_DLT_VENV overrides).
#
#   benches/dlt/run.sh POSTGRES_URL SCHEMA.TABLE SINK_URL
#
# Prints `DLT_RESULT {"rows": N, "secs": S}` (S: from pipeline start to the
# last batch acknowledged, the same span as retl's full sync).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
url=$1 table=$2 sink=$3
venv="${RETL_DLT_VENV:-$here/../../target/dlt-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import dlt, sqlalchemy, psycopg2, requests' 2>/dev/null; then
  echo "dlt: creating $venv and installing dlt[sql_database], psycopg2-binary, requests (once)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q "dlt[sql_database]" psycopg2-binary requests >/dev/null
fi
echo "dlt: $("$venv/bin/python" -c 'import dlt; print("dlt", dlt.__version__)')"
# SQLAlchemy wants postgresql+psycopg2:// URLs.
sa_url="postgresql+psycopg2://${url#*://}"
DLT_DATA_DIR="$(mktemp -d)" RUNTIME__LOG_LEVEL=WARNING \
  exec "$venv/bin/python" "$here/pipeline.py" "$sa_url" "$table" "$sink"
