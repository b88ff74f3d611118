#!/usr/bin/env python3
"""Live option-chain summaries from strikeflow's chains topic, written in Avro single-object
encoding (`[registry] encoding = "single-object"`, or no registry at all), decoded with
fastavro: the writer schema is found by the CRC-64-AVRO fingerprint in each record's
header among the .avsc files of the schemas/avro directory. No registry needed.

    pip install confluent-kafka fastavro
    python chains_single_object.py --bootstrap 127.0.0.1:19092 \
        --schemas schemas/avro --topic chains.v1

Reads committed records only (the processors write in transactions). Starts at the live end
unless --from-beginning; stops after --max-records summaries or --idle-secs without one.
"""

import argparse
import io
import json
import pathlib
import sys
import uuid

import fastavro
import fastavro.schema
from confluent_kafka import Consumer

from chain_summary import summary


def schemas_by_fingerprint(directory):
    """{8 header bytes: parsed schema} for every .avsc in `directory`."""
    found = {}
    for path in sorted(pathlib.Path(directory).glob("*.avsc")):
        parsed = fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))
        pcf = fastavro.schema.to_parsing_canonical_form(parsed)
        # fastavro gives the fingerprint as the hex of the 8 bytes that follow C3 01.
        found[bytes.fromhex(fastavro.schema.fingerprint(pcf, "CRC-64-AVRO"))] = parsed
    return found


def decode(value, schemas):
    """The datum of one single-object record; ValueError when it is not one we know."""
    if len(value) < 10 or value[:2] != b"\xc3\x01":
        raise ValueError("not an Avro single-object record (Confluent-framed? use chains_confluent.py)")
    schema = schemas.get(value[2:10])
    if schema is None:
        raise ValueError(f"unknown schema fingerprint {value[2:10].hex()}")
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default="127.0.0.1:19092")
    p.add_argument("--schemas", default=str(pathlib.Path(__file__).resolve().parents[2] / "schemas" / "avro"))
    p.add_argument("--topic", default="chains.v1")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--max-records", type=int, default=0, help="0: until interrupted")
    p.add_argument("--idle-secs", type=float, default=0, help="0: wait forever")
    args = p.parse_args()

    schemas = schemas_by_fingerprint(args.schemas)
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"chains-example-{uuid.uuid4()}",
        "auto.offset.reset": "earliest" if args.from_beginning else "latest",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
    })
    consumer.subscribe([args.topic])
    printed, idle = 0, 0.0
    try:
        while not args.max_records or printed < args.max_records:
            msg = consumer.poll(1.0)
            if msg is None:
                idle += 1.0
                if args.idle_secs and idle >= args.idle_secs:
                    break
                continue
            if msg.error():
                print(f"kafka: {msg.error()}", file=sys.stderr)
                continue
            idle = 0.0
            print(summary(decode(msg.value(), schemas)), flush=True)
            printed += 1
    finally:
        consumer.close()
    return 0 if printed else 1


if __name__ == "__main__":
    sys.exit(main())
