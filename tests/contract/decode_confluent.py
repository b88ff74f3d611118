#!/usr/bin/env python3
"""Decode Confluent-framed strikeflow records with confluent-kafka's AvroDeserializer, as a
downstream consumer would: the writer schema is fetched from the schema registry by the id
in each record's header.

Usage: decode_confluent.py REGISTRY_URL < records.jsonl

Each stdin line is {"topic": <topic>, "value": <hex of the record value>}. For each, one
JSON line is printed: {"topic": <topic>, "datum": {...}}. Logical types come back from the
deserializer as datetime/date and are turned back into the integers on the wire
(timestamp-micros -> microseconds since the epoch, date -> days since 1970-01-01); doubles
are printed as strings holding Python's repr (shortest round-trip text, also for inf/nan),
so the caller can compare them bit for bit. Exits non-zero with the reason on stderr when a
record cannot be decoded.
"""

import datetime
import json
import sys

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
EPOCH_DATE = datetime.date(1970, 1, 1)
MICROSECOND = datetime.timedelta(microseconds=1)


def to_wire(value):
    """Undo the logical-type conversions (datetime before date: datetime is a date)."""
    if isinstance(value, datetime.datetime):
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


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    # A timeout: without one a request to a registry that stops answering can hang forever.
    client = SchemaRegistryClient({"url": sys.argv[1], "timeout": 10})
    deserializer = AvroDeserializer(client)
    for n, line in enumerate(sys.stdin, 1):
        record = json.loads(line)
        value = bytes.fromhex(record["value"])
        context = SerializationContext(record["topic"], MessageField.VALUE)
        try:
            datum = deserializer(value, context)
        except Exception as e:  # noqa: BLE001 - report any failure with the record number
            print(f"decode_confluent.py: record {n} of {record['topic']}: {e!r}", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({"topic": record["topic"], "datum": to_wire(datum)}))


if __name__ == "__main__":
    main()
