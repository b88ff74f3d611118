#!/usr/bin/env python3
"""Live option-chain summaries from strikeflow's chains topic, written in Confluent framing
(`[registry] encoding = "confluent"`, the default when a registry is configured), decoded
with confluent-kafka's AvroDeserializer: the writer schema is fetched from the schema
registry by the id in each record, as Kafka Connect, ksqlDB or Flink would.

    pip install 'confluent-kafka[avro]'
    python chains_confluent.py --bootstrap 127.0.0.1:19092 \
        --registry http://127.0.0.1:18081/apis/ccompat/v7 --topic chains.v1

Reads committed records only (the processors write in transactions). Starts at the live end
unless --from-beginning; stops after --max-records summaries or --idle-secs without one.
"""

import argparse
import sys
import uuid

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from chain_summary import summary


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default="127.0.0.1:19092")
    p.add_argument("--registry", default="http://127.0.0.1:18081/apis/ccompat/v7")
    p.add_argument("--topic", default="chains.v1")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--max-records", type=int, default=0, help="0: until interrupted")
    p.add_argument("--idle-secs", type=float, default=0, help="0: wait forever")
    args = p.parse_args()

    # Set a timeout: a request to a registry that stops answering would otherwise hang.
    registry = SchemaRegistryClient({"url": args.registry, "timeout": 10})
    deserialize = AvroDeserializer(registry)
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
            chain = deserialize(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
            print(summary(chain), flush=True)
            printed += 1
    finally:
        consumer.close()
    return 0 if printed else 1


if __name__ == "__main__":
    sys.exit(main())
