#!/usr/bin/env python3
"""Decode every message value Caracal wrote into its embedded log with Confluent's own
`AvroDeserializer`, resolving each schema id through the Schema Registry at URL.

    registry_decode.py EVENTS_DB URL USER:PASSWORD

Prints one JSON line: a list of {topic, magic, schema_id, record} for every message of the four
event topics, oldest first per partition. A value that is not in the Confluent wire format, or
that the deserializer refuses, is an error (exit 1).
"""

import json
import sqlite3
import sys

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

TOPICS = (
    "caracal.metering.events",
    "caracal.policy.decisions",
    "caracal.agent.lifecycle",
    "caracal.policy.changes",
)


def main():
    db, url, auth = sys.argv[1:4]
    client = SchemaRegistryClient({"url": url, "basic.auth.user.info": auth})
    deserializer = AvroDeserializer(client)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out = []
    rows = conn.execute(
        'SELECT topic, value FROM messages ORDER BY topic, "partition", "offset"'
    )
    for topic, value in rows:
        if topic not in TOPICS:
            continue
        value = bytes(value)
        record = deserializer(value, SerializationContext(topic, MessageField.VALUE))
        out.append(
            {
                "topic": topic,
                "magic": value[0],
                "schema_id": int.from_bytes(value[1:5], "big"),
                "record": record,
            }
        )
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
