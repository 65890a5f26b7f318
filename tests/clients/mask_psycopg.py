#!/usr/bin/env python3
"""psycopg 3 binary-result client for dbwarden's masking end-to-end tests.

Usage: mask_psycopg.py HOST PORT DBNAME SQL [PARAM...]

Runs SQL (with the PARAMs bound as text parameters, if any) with binary results (`execute(..., binary=True)`), checks that every result column
really came back in binary format, and prints one JSON line per row with each value as
psycopg's binary loader decoded it (Decimal and dates as strings, lists, dicts). A value
psycopg cannot decode raises and exits 1: that is what a masker breaking the binary format
would cause. Exits 3 if psycopg is missing.
"""

import datetime
import decimal
import json
import sys

try:
    import psycopg
except ImportError as e:
    print(f"MISSING PYTHON PACKAGE: {e} (pip install -r tests/clients/requirements.txt)", file=sys.stderr)
    sys.exit(3)


def plain(v):
    if isinstance(v, (decimal.Decimal, datetime.date, datetime.datetime)):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def main():
    host, port, dbname, sql = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    params = sys.argv[5:] or None
    with psycopg.connect(host=host, port=port, dbname=dbname, user="postgres", connect_timeout=10, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(sql, params, binary=True)
        res = cur.pgresult
        formats = [res.fformat(i) for i in range(res.nfields)]
        if any(f != 1 for f in formats):
            print(f"CHECK FAILED: result formats {formats}, expected all binary (1)", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({"columns": [d.name for d in cur.description], "types": [d.type_code for d in cur.description]}))
        for row in cur.fetchall():
            print(json.dumps([plain(v) for v in row]))
        # The connection stays usable after the binary result.
        cur.execute("select 42", binary=True)
        print(json.dumps({"after": cur.fetchone()[0]}))


if __name__ == "__main__":
    main()
