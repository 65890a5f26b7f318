#!/usr/bin/env python3
"""asyncpg scenarios for dbwarden's PostgreSQL proxy tests.

Usage: pg_asyncpg.py HOST PORT DBNAME

asyncpg uses the extended protocol with binary formats for everything. Covers prepared
statements, executemany, COPY (copy_records_to_table, copy_to_table, copy_from_query,
copy_from_table), cursor iteration in a transaction, concurrent connections and error recovery,
printing deterministic lines. Exits 3 if asyncpg is missing, 1 on any failed check.
"""

import asyncio
import datetime
import decimal
import hashlib
import io
import sys

try:
    import asyncpg
except ImportError as e:  # the Rust test turns this into a failure under CI
    print(f"MISSING PYTHON PACKAGE: {e} (pip install -r tests/clients/requirements.txt)", file=sys.stderr)
    sys.exit(3)


def check(cond, what):
    if not cond:
        print(f"CHECK FAILED: {what}", file=sys.stderr)
        sys.exit(1)


async def main():
    host, port, dbname = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    conn = await asyncpg.connect(host=host, port=port, database=dbname, user="postgres", timeout=10)
    await conn.execute(
        "create table acc (id int8 primary key, owner text, balance numeric(14,2), "
        "blob bytea, active bool, opened timestamptz)"
    )

    # Prepared statements with binary parameters and results.
    ins = await conn.prepare("insert into acc values ($1, $2, $3, $4, $5, $6) returning id * 2")
    base = datetime.datetime(2023, 1, 1, tzinfo=datetime.timezone.utc)
    doubled = []
    for i in range(100):
        doubled.append(await ins.fetchval(i, f"owner {i}", decimal.Decimal(i) * decimal.Decimal("1.25"),
                                          bytes([i, 255 - i]), i % 3 == 0, base + datetime.timedelta(hours=i)))
    check(doubled == [2 * i for i in range(100)], "prepared insert returning")
    print(f"prepared inserts {len(doubled)}")
    sel = await conn.prepare("select id, owner, balance, blob, active, opened from acc where id = any($1::int8[]) order by id")
    rows = await sel.fetch([1, 50, 99])
    for r in rows:
        print("row", r["id"], r["owner"], r["balance"], r["blob"].hex(), r["active"], r["opened"].isoformat())
    check(rows[1]["balance"] == decimal.Decimal("62.50"), "numeric balance")
    print("param types", [t.name for t in sel.get_parameters()], "attrs", [a.name for a in sel.get_attributes()])

    # executemany (pipelined Bind/Execute batches).
    await conn.executemany("insert into acc (id, owner, balance) values ($1, $2, $3)",
                           [(i, f"many {i}", decimal.Decimal(i)) for i in range(100, 1100)])
    print("executemany count", await conn.fetchval("select count(*) from acc"))

    # COPY: records in (binary), table out, query out, table in from a file-like object.
    n = await conn.copy_records_to_table(
        "acc", records=[(i, f"copy {i}", decimal.Decimal(i) / 3, bytes([0xAB]) * (i % 17), i % 2 == 0, base) for i in range(1100, 6100)],
        columns=["id", "owner", "balance", "blob", "active", "opened"])
    print("copy_records_to_table", n)
    out = io.BytesIO()
    status = await conn.copy_from_query("select id, owner, balance from acc where id < $1 order by id", 3000, output=out)
    data = out.getvalue()
    print("copy_from_query", status, len(data), data.count(b"\n"), hashlib.sha256(data).hexdigest())
    await conn.execute("create table acc2 (like acc)")
    out = io.BytesIO()
    status = await conn.copy_from_table(
        "acc", columns=["id", "owner", "balance", "blob", "active", "opened"], output=out, format="csv"
    )
    csv = out.getvalue()
    print("copy_from_table", status, csv.count(b"\n"), hashlib.sha256(csv).hexdigest())
    status = await conn.copy_to_table("acc2", source=io.BytesIO(csv), format="csv")
    print("copy_to_table", status)
    diff = await conn.fetchval("select count(*) from (select * from acc except all select * from acc2) d")
    check(diff == 0, "acc2 equals acc after csv round trip")
    print("csv round trip identical", await conn.fetchval("select count(*) from acc2"))

    # Cursor iteration inside a transaction (Bind of a portal, Execute with a row limit).
    async with conn.transaction():
        total, idsum = 0, 0
        async for rec in conn.cursor("select id, balance from acc where id % 7 = 0 order by id", prefetch=250):
            total += 1
            idsum += rec["id"]
        print("cursor iterated", total, idsum)
        cur = await conn.cursor("select id from acc order by id")
        first = await cur.fetch(10)
        await cur.forward(1000)
        after = await cur.fetchrow()
        print("cursor fetch", [r["id"] for r in first][:3], after["id"])

    # Errors do not break the session; a failed transaction rolls back.
    for sql in ("selec 1", "select * from nope", "select 1/0"):
        try:
            await conn.fetch(sql)
            print("error", sql, "none")
        except asyncpg.PostgresError as e:
            print("error", repr(sql), e.sqlstate)
        check(await conn.fetchval("select 1") == 1, f"usable after {sql}")
    try:
        async with conn.transaction():
            await conn.execute("insert into acc (id) values (-1)")
            await conn.execute("insert into acc (id) values (-1)")
    except asyncpg.UniqueViolationError as e:
        print("unique violation", e.sqlstate)
    print("rolled back", await conn.fetchval("select count(*) from acc where id = -1"))

    # Several connections at once through the proxy.
    pool = await asyncpg.create_pool(host=host, port=port, database=dbname, user="postgres", min_size=4, max_size=4)
    sums = await asyncio.gather(*[pool.fetchval("select sum(id) from acc where id % 4 = $1", k) for k in range(4)])
    await pool.close()
    print("pool sums", sums, sum(sums))
    await conn.close()
    print("done")


if __name__ == "__main__":
    asyncio.run(main())
