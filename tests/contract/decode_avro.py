#!/usr/bin/env python3
"""Decode Rust-encoded Avro single-object messages with fastavro, as a consumer in another
language would: resolve the writer schema by the fingerprint in the message header.

Usage: decode_avro.py SCHEMA_DIR FILE...

Every SCHEMA_DIR/*.avsc is parsed with fastavro and fingerprinted with fastavro's own
CRC-64-AVRO over its own Parsing Canonical Form. First one JSON line per schema is printed:
    {"kind": "schema", "record": <full name>, "fingerprint": <u64>, "canonical_form": <pcf>}
then, for each FILE (one message per file), one JSON line:
    {"kind": "message", "file": <path>, "record": <full name>, "datum": {...}}
Logical types come back from fastavro as datetime/date; they are converted back to the
integers on the wire (timestamp-micros -> microseconds since the epoch, date -> days since
1970-01-01) with exact integer arithmetic. Doubles are printed as strings holding Python's
repr (the shortest text that round-trips, also for inf/-inf/-0.0), because JSON numbers
cannot carry infinities and not every JSON parser reads floats correctly rounded; the caller
parses them back and compares bit for bit. Booleans stay JSON booleans, enum symbols (also
inside ["null", enum] unions) stay strings and null union branches stay JSON null, so the
analytics records (StrikeAnalytics, ChainAnalytics, MoneynessPoint) need no special casing;
each .avsc is parsed on its own, so two files may each define the same enum (OptionSide).
Exits non-zero (with the reason on stderr) when a file has no C3 01 marker, its fingerprint
matches no schema, or its body does not decode to exactly the message length.
"""

import datetime
import io
import json
import pathlib
import sys

import fastavro
import fastavro.schema

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
EPOCH_DATE = datetime.date(1970, 1, 1)
MICROSECOND = datetime.timedelta(microseconds=1)


def fail(msg):
    print(f"decode_avro.py: {msg}", file=sys.stderr)
    sys.exit(1)


def to_wire(value):
    """Undo fastavro's logical-type conversions (datetime before date: datetime is a date)."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            fail(f"naive datetime {value!r}: cannot map back to UTC micros")
        return (value - EPOCH) // MICROSECOND
    if isinstance(value, datetime.date):
        return (value - EPOCH_DATE).days
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    if isinstance(value, float):
        return repr(value)
    return value


def main(argv):
    if len(argv) < 2:
        fail("usage: decode_avro.py SCHEMA_DIR FILE...")
    schema_dir = pathlib.Path(argv[0])
    by_fingerprint = {}
    for path in sorted(schema_dir.glob("*.avsc")):
        with open(path, encoding="utf-8") as f:
            parsed = fastavro.parse_schema(json.load(f))
        pcf = fastavro.schema.to_parsing_canonical_form(parsed)
        # fastavro returns the fingerprint as the hex of its 8 little-endian bytes, i.e. the
        # exact bytes that follow C3 01 in the header.
        fp_hex = fastavro.schema.fingerprint(pcf, "CRC-64-AVRO")
        header_fp = bytes.fromhex(fp_hex)
        if header_fp in by_fingerprint:
            fail(f"{path}: fingerprint collision")
        by_fingerprint[header_fp] = parsed
        print(json.dumps({
            "kind": "schema",
            "record": parsed["name"],
            "fingerprint": int.from_bytes(header_fp, "little"),
            "canonical_form": pcf,
        }))
    if not by_fingerprint:
        fail(f"no .avsc files in {schema_dir}")

    for name in argv[1:]:
        data = pathlib.Path(name).read_bytes()
        if len(data) < 10 or data[:2] != b"\xc3\x01":
            fail(f"{name}: not an Avro single-object message")
        schema = by_fingerprint.get(data[2:10])
        if schema is None:
            fail(f"{name}: fingerprint {data[2:10].hex()} matches no schema in {schema_dir}")
        body = io.BytesIO(data[10:])
        datum = fastavro.schemaless_reader(body, schema)
        if body.tell() != len(data) - 10:
            fail(f"{name}: {len(data) - 10 - body.tell()} trailing bytes after the datum")
        print(json.dumps({
            "kind": "message",
            "file": name,
            "record": schema["name"],
            "datum": to_wire(datum),
        }))


if __name__ == "__main__":
    main(sys.argv[1:])
