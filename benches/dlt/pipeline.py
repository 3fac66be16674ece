"""The benchmark's sync done with dlt: sql_database -> HTTP sink.

Reads SCHEMA.TABLE with dlt's sql_database source (SQLAlchemy backend, the
default) and hands batches of 500 rows to a custom destination that POSTs
them in retl's batch format to the sink, mapped to the same payload as the
retl benchmark's Mapping.
"""
import json
import os
import sys
import time

import dlt
import requests
from dlt.sources.sql_database import sql_table

url, qualified, sink = sys.argv[1], sys.argv[2], sys.argv[3]
schema, table = qualified.split(".", 1)
session = requests.Session()
sent = 0


@dlt.destination(batch_size=500, loader_file_format="typed-jsonl", name="retl_sink", naming_convention="direct")
def http_sink(items, table_schema):
    global sent
    records = [
        {
            "key": str(r["id"]),
            "operation": "upsert",
            "payload": {
                "userId": str(r["id"]),
                "email": r["email"],
                "name": r["name"],
                "plan": r["plan"],
                "mrr": float(r["mrr"]),
                "createdAt": r["created_at"].isoformat() if hasattr(r["created_at"], "isoformat") else r["created_at"],
                "attrs": r["attrs"] if not isinstance(r["attrs"], str) else json.loads(r["attrs"]),
            },
        }
        for r in items
    ]
    reply = session.post(sink, data=json.dumps({"action": "identify", "records": records}, default=str),
                         headers={"content-type": "application/json"}, timeout=60)
    reply.raise_for_status()
    sent += len(records)


started = time.monotonic()
pipeline = dlt.pipeline(pipeline_name="retl_bench_" + str(os.getpid()), destination=http_sink, dev_mode=True)
pipeline.run(sql_table(credentials=url, schema=schema, table=table))
secs = time.monotonic() - started
print("DLT_RESULT " + json.dumps({"rows": sent, "secs": secs}))
