"""Replays the statements Plumb's ClickHouse backend sent to ClickHouse 18.16 on a current
ClickHouse (chdb, in-process), in order, and checks that each query answers what 18.16 answered.

Usage: python chdb_replay.py STATEMENTS.json SCRATCH_DIR
STATEMENTS.json: [{"sql": "...", "answer": "..." or null}, ...]; answers compare as sets of lines
(groups come in no set order). Prints the version and a summary; exits 1 on the first difference."""

import json
import sys

from chdb import session

statements = json.load(open(sys.argv[1]))
s = session.Session(sys.argv[2])
print("chdb ClickHouse", s.query("SELECT version()", "TabSeparated").bytes().decode().strip())
s.query("CREATE DATABASE IF NOT EXISTS plumb")
s.query("USE plumb")
compared = 0
for i, st in enumerate(statements):
    sql = st["sql"]
    try:
        got = s.query(sql, "TabSeparated").bytes().decode()
    except Exception as e:  # noqa: BLE001 - the message is the finding
        print(f"statement {i} failed on the current ClickHouse: {e}\n{sql[:2000]}")
        sys.exit(1)
    if st["answer"] is not None:
        want = sorted(l for l in st["answer"].splitlines() if l)
        have = sorted(l for l in got.splitlines() if l)
        if want != have:
            print(f"statement {i} answers differently:\n{sql[:2000]}\n18.16: {want[:10]}\ncurrent: {have[:10]}")
            sys.exit(1)
        compared += 1
print(f"replayed {len(statements)} statements, {compared} answers equal")
