"""Another Kafka client next to Caracal: confluent-kafka (librdkafka), the judge of what
Caracal reads and writes on a real broker.

usage:
  kafka_client.py produce BROKER TOPIC KEY VALUE_HEX [NAME=VALUE ...]
      produces one message (headers as given) and prints {"partition": p, "offset": o}
  kafka_client.py read BROKER TOPIC
      prints every message of every partition as JSON lines:
      {"partition", "offset", "key", "value_hex", "headers": [[name, value], ...]}
  kafka_client.py group BROKER SCHEMA_DIR TOPIC...
      reads the topics as one consumer group (subscribe, committed offsets) up to the high
      watermarks seen at the start, decodes every value with fastavro (Avro single-object
      encoding, schema found by fingerprint) and prints one JSON object:
      {"messages": {topic: count}, "records": {topic: [decoded record, ...]}}
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition


def produce(broker, topic, key, value_hex, header_args):
    headers = [tuple(h.split("=", 1)) for h in header_args]
    headers = [(name, value.encode()) for name, value in headers]
    done = {}

    def delivered(err, msg):
        if err is not None:
            raise SystemExit(f"delivery failed: {err}")
        done["partition"], done["offset"] = msg.partition(), msg.offset()

    producer = Producer({"bootstrap.servers": broker, "acks": "all", "compression.type": "none"})
    producer.produce(topic, key=key.encode(), value=bytes.fromhex(value_hex), headers=headers,
                     on_delivery=delivered)
    if producer.flush(30) != 0:
        raise SystemExit("message not delivered within 30 s")
    print(json.dumps(done))


def read(broker, topic):
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "caracal-tests",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = sorted(metadata.topics[topic].partitions)
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high <= low:
            continue
        consumer.assign([TopicPartition(topic, p, low)])
        seen = low
        while seen < high:
            msg = consumer.poll(10)
            if msg is None:
                raise SystemExit(f"no message at {topic}/{p}@{seen} within 10 s")
            if msg.error():
                raise SystemExit(f"read error: {msg.error()}")
            seen = msg.offset() + 1
            headers = [[k, (v or b"").decode("utf-8", "replace")] for k, v in (msg.headers() or [])]
            print(json.dumps({"partition": p, "offset": msg.offset(),
                              "key": (msg.key() or b"").decode("utf-8", "replace"),
                              "value_hex": (msg.value() or b"").hex(), "headers": headers}))
    consumer.close()


def group(broker, schema_dir, topics):
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import avro_decode

    schemas = avro_decode.load_schemas(schema_dir)
    by_fingerprint = {v["fingerprint"]: k for k, v in avro_decode.fingerprints(schemas).items()}
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "caracal-judge",
                         "enable.auto.commit": True, "auto.offset.reset": "earliest"})
    want = {}
    for topic in topics:
        metadata = consumer.list_topics(topic, timeout=10)
        for p in metadata.topics[topic].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > 0:
                want[(topic, p)] = high
    consumer.subscribe(list(topics))
    counts = {t: 0 for t in topics}
    records = {t: [] for t in topics}
    deadline = time.monotonic() + 60
    while want and time.monotonic() < deadline:
        msg = consumer.poll(1)
        if msg is None:
            continue
        if msg.error():
            raise SystemExit(f"read error: {msg.error()}")
        key = (msg.topic(), msg.partition())
        if key not in want or msg.offset() >= want[key]:
            continue
        data = msg.value() or b""
        if data[:2] != avro_decode.SINGLE_OBJECT_MAGIC or len(data) < 10:
            raise SystemExit(f"{key}@{msg.offset()}: not an Avro single-object message")
        stem = by_fingerprint.get(data[2:10].hex())
        if stem is None:
            raise SystemExit(f"{key}@{msg.offset()}: unknown fingerprint {data[2:10].hex()}")
        records[msg.topic()].append(avro_decode.decode(schemas[stem], data[10:], stem))
        counts[msg.topic()] += 1
        if msg.offset() + 1 >= want[key]:
            del want[key]
    consumer.close()
    if want:
        raise SystemExit(f"partitions not read to their end within 60 s: {sorted(want)}")
    print(json.dumps({"messages": counts, "records": records}))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "produce":
        produce(*sys.argv[2:6], sys.argv[6:])
    elif command == "group":
        group(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif command == "read":
        read(*sys.argv[2:4])
    else:
        raise SystemExit(__doc__)
