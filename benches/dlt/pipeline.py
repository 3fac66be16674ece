"""The benchmark's sync done with dlt: sql_database -> HTTP sink.

    pipeline.py SQLALCHEMY_URL SCHEMA.TABLE SINK_URL BACKEND BATCH

Reads SCHEMA.TABLE with dlt's sql_table source, with BACKEND `sqlalchemy`
(dlt's default) or `connectorx` (its fastest, Arrow tables read by a Rust
library), and hands batches of BATCH rows to a custom destination that POSTs
them, mapped to the same payload as the retl benchmark's Mapping, in retl's
batch format to the sink.

dlt at its best, as far as its own settings go: the bodies are encoded with
orjson (a dependency of dlt itself), and dlt loads up to 4 files at once
(`max_parallel_load_jobs`, the rows written in files of 25 batches), so it
has as many requests in flight as retl; within a file, dlt calls the
destination function once per batch, in order. dlt extracts, normalizes
and loads one after the other: the time is the three together.

Prints `DLT_RESULT {"rows", "secs", "rss_kb", "version", "backend"}`: secs
from the pipeline's start to the last batch answered; rss_kb the peak RSS
of this process or of any child it waited for, whichever is larger.
"""
import json
import os
import resource
import sys
import threading
import time

import dlt
import orjson
import requests
from dlt.sources.sql_database import sql_table

url, qualified, sink, backend, batch = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
schema, table = qualified.split(".", 1)
sent = 0
sent_lock = threading.Lock()
# One keep-alive session per loader thread (a Session is not thread-safe).
local = threading.local()


def payload(r):
    created = r["created_at"]
    attrs = r["attrs"]
    return {
        "userId": str(r["id"]),
        "email": r["email"],
        "name": r["name"],
        "plan": r["plan"],
        "mrr": float(r["mrr"]),
        "createdAt": created.isoformat() if hasattr(created, "isoformat") else created,
        "attrs": json.loads(attrs) if isinstance(attrs, str) else attrs,
    }


# Arrow tables (connectorx) are handed over as Parquet, their own format;
# rows (sqlalchemy) as typed JSON lines.
file_format = "parquet" if backend == "connectorx" else "typed-jsonl"
os.environ["DATA_WRITER__FILE_MAX_ITEMS"] = str(25 * batch)


@dlt.destination(batch_size=batch, loader_file_format=file_format, name="retl_sink", naming_convention="direct",
                 max_parallel_load_jobs=4)
def http_sink(items, table_schema):
    global sent
    rows = items.to_pylist() if hasattr(items, "to_pylist") else items
    records = [{"key": str(r["id"]), "operation": "upsert", "payload": payload(r)} for r in rows]
    body = orjson.dumps({"action": "identify", "records": records})
    if not hasattr(local, "session"):
        local.session = requests.Session()
    reply = local.session.post(sink, data=body, headers={"content-type": "application/json"}, timeout=60)
    reply.raise_for_status()
    with sent_lock:
        sent += len(records)


started = time.monotonic()
pipeline = dlt.pipeline(pipeline_name="retl_bench_" + str(os.getpid()), destination=http_sink, dev_mode=True)
pipeline.run(sql_table(credentials=url, schema=schema, table=table, backend=backend))
secs = time.monotonic() - started
rss_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print("DLT_RESULT " + json.dumps({"rows": sent, "secs": secs, "rss_kb": rss_kb, "version": dlt.__version__, "backend": backend}))
