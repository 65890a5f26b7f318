#!/usr/bin/env python3
"""psycopg 3 scenarios for dbwarden's PostgreSQL proxy tests.

Usage: pg_psycopg.py HOST PORT DBNAME

Runs pipeline mode, COPY (text and binary, both directions), a server-side (named) cursor
fetched in batches, binary results and error recovery, printing deterministic lines so the
test can compare a run through dbwarden with a direct run. Exits 3 if psycopg is missing,
1 on any failed check.
"""

import datetime
import decimal
import hashlib
import sys

try:
    import psycopg
    from psycopg import errors
except ImportError as e:  # the Rust test turns this into a failure under CI
    print(f"MISSING PYTHON PACKAGE: {e} (pip install -r tests/clients/requirements.txt)", file=sys.stderr)
    sys.exit(3)


def check(cond, what):
    if not cond:
        print(f"CHECK FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def main():
    host, port, dbname = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    conn = psycopg.connect(host=host, port=port, dbname=dbname, user="postgres", connect_timeout=10, autocommit=True)
    cur = conn.cursor()
    cur.execute("create table items (id int8 primary key, name text, price numeric(12,2), data bytea, ok bool)")

    # Pipeline mode: many statements in flight, results collected afterwards.
    with conn.pipeline() as p:
        curs = []
        for i in range(200):
            c = conn.cursor()
            c.execute(
                "insert into items values (%s, %s, %s, %s, %s) returning id",
                (i, f"item {i}", decimal.Decimal(i) / 4, bytes([i % 256, 0, 255]), i % 2 == 0),
            )
            curs.append(c)
        p.sync()
        ids = [c.fetchone()[0] for c in curs]
    check(ids == list(range(200)), "pipeline insert returning ids in order")
    print(f"pipeline inserted {len(ids)} sum={sum(ids)}")

    # An error inside a pipeline: the failed batch raises, the connection stays usable.
    try:
        with conn.pipeline() as p:
            conn.execute("select 1")
            conn.execute("select 1/0")
            conn.execute("select 2")
        print("pipeline error: none")
    except errors.DivisionByZero as e:
        print(f"pipeline error: {e.sqlstate}")
    check(conn.execute("select 'after pipeline error'").fetchone()[0] == "after pipeline error", "usable after pipeline error")
    print("after pipeline error ok")

    # COPY FROM STDIN, row by row (text) and binary.
    with cur.copy("copy items (id, name, price, data, ok) from stdin") as cp:
        for i in range(200, 5200):
            cp.write_row((i, f"copied\t{i}\n\\ é", decimal.Decimal(i) / 100, bytes([0xAB, i % 256, 0xCD]) * (i % 17), None if i % 3 == 0 else i % 2 == 1))
    with cur.copy("copy items (id, name, price, data, ok) from stdin (format binary)") as cp:
        cp.set_types(["int8", "text", "numeric", "bytea", "bool"])
        for i in range(5200, 7200):
            cp.write_row((i, f"bin {i}", decimal.Decimal(i) / 8, bytes([0xA0 | (i % 16)]) * (i % 10), i % 4 == 0))
    cur.execute("select count(*), sum(id), sum(price), sum(length(data)), count(ok) from items")
    print("after copy in: %s %s %s %s %s" % cur.fetchone())

    # COPY TO STDOUT: raw text blocks, and typed rows in binary.
    h = hashlib.sha256()
    nbytes = 0
    with cur.copy("copy (select id, name, price, data, ok from items order by id) to stdout") as cp:
        for block in cp:
            h.update(block)
            nbytes += len(block)
    print(f"copy out text bytes={nbytes} sha256={h.hexdigest()}")
    # Binary COPY OUT: dbwarden may refuse it (it cannot be inspected for masking: fail
    # closed); either outcome is printed and the session must stay usable.
    rows = 0
    h = hashlib.sha256()
    try:
        with cur.copy("copy (select id, name, price, data, ok from items order by id) to stdout (format binary)") as cp:
            cp.set_types(["int8", "text", "numeric", "bytea", "bool"])
            for row in cp.rows():
                rows += 1
                h.update(repr(row).encode())
        print(f"copy out binary rows={rows} sha256={h.hexdigest()}")
    except psycopg.Error as e:
        print(f"copy out binary refused {e.sqlstate}: {e.diag.message_primary}")
    check(conn.execute("select count(*) from items").fetchone()[0] == 7200, "usable after binary copy out")

    # Server-side cursor fetched in batches, inside a transaction.
    conn.autocommit = False
    with conn.cursor(name="big_cursor") as sc:
        sc.itersize = 500
        sc.execute("select id, name from items where id %% %s = 0 order by id", (3,))
        batches, total, idsum = 0, 0, 0
        while True:
            batch = sc.fetchmany(700)
            if not batch:
                break
            batches += 1
            total += len(batch)
            idsum += sum(r[0] for r in batch)
        print(f"named cursor batches={batches} rows={total} idsum={idsum}")
    with conn.cursor(name="iter_cursor", scrollable=False) as sc:
        sc.itersize = 300
        sc.execute("select id from items order by id desc")
        n = sum(1 for _ in sc)
        print(f"named cursor iterated rows={n}")
    conn.commit()
    conn.autocommit = True

    # Binary results of the common types.
    bcur = conn.cursor(binary=True)
    bcur.execute(
        "select 42::int8, 123456.789::numeric, 'tëxt'::text, '\\x00ff10'::bytea, true, "
        "'2024-02-29 12:34:56.789+00'::timestamptz, null::text, (-2147483648)::int4, 1.5::float8"
    )
    row = bcur.fetchone()
    check(row[0] == 42 and row[1] == decimal.Decimal("123456.789"), "binary int8/numeric")
    check(row[3] == b"\x00\xff\x10" and row[4] is True and row[6] is None, "binary bytea/bool/null")
    check(row[5] == datetime.datetime(2024, 2, 29, 12, 34, 56, 789000, tzinfo=datetime.timezone.utc), "binary timestamptz")
    print("binary row: " + " | ".join(repr(v) if not isinstance(v, datetime.datetime) else v.astimezone(datetime.timezone.utc).isoformat() for v in row))
    r = conn.execute("select sum(price), string_agg(name, ',' order by id) from items where id < %s", (5,), binary=True).fetchone()
    print(f"binary execute: {r[0]} {r[1]}")

    # Server errors leave the session usable.
    for sql in ("selec 1", "select * from no_such_table", "select 1/0"):
        try:
            conn.execute(sql)
            print(f"error {sql!r}: none")
        except psycopg.Error as e:
            print(f"error {sql!r}: {e.sqlstate}")
        check(conn.execute("select 1").fetchone()[0] == 1, f"usable after {sql!r}")
    print("done")
    conn.close()


if __name__ == "__main__":
    main()
