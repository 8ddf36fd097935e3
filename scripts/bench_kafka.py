#!/usr/bin/env python3
"""The measuring side of scripts/bench-kafka.sh, with a Kafka client Caracal did not write
(confluent-kafka, i.e. librdkafka) and Python's sqlite3. Measures; starts nothing.

  bench_kafka.py sample BROKER OUT TOPIC...
      every 50 ms appends "SECONDS TOTAL_1 TOTAL_2 ..." to OUT: the wall clock and the sum of
      each topic's high watermarks (the events the broker acknowledged); runs until killed
  bench_kafka.py ledger-wait DB EXPECTED START DEADLINE_S
      polls the ledger's SQLite file until it holds EXPECTED rows and EXPECTED sealed rows;
      prints JSON seconds since START (a Unix time) to the first row, all rows, all sealed
  bench_kafka.py limit BROKER SOURCE_TOPIC... --fetch TOPIC
      the limit: reads every message of the source topics (untimed), produces the same
      messages (key, value, headers, partition; the original order) into fresh topics with the
      same partition counts (acks=all, lz4, linger 10 ms, batch 32 KiB: Caracal's producer
      settings), then fetches the copy of TOPIC back from its start (Caracal's consumer fetch
      settings); prints JSON counts, bytes, seconds and this process's CPU seconds of each
  bench_kafka.py index-headers DB
      waits (20 s at most) for tansu's sqlite schema in DB, then indexes its `header` table by
      record: tansu 0.6 has no such index, so every fetched record's headers are found by a
      scan of every header row (a fetch of Caracal's events, three headers each, stalls past any
      timeout after a few thousand records)
  bench_kafka.py summary WORK BASELINE EXPECTED
      the summary of a run from the files bench-kafka.sh leaves in WORK (published.txt of
      `sample`, load.txt of the load generator, ledger.json, limit.json): the gateway's publish
      rate (the broker's acknowledged events going from BASELINE to EXPECTED) and the ledger's
      rows/s, each beside its limit and as a ratio
"""
import json
import resource
import sqlite3
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

# Caracal's defaults (src/config/kafka_client.rs), lz4 as the bench configures it.
PRODUCER = {"acks": "all", "compression.type": "lz4", "linger.ms": 10, "batch.size": 32768}
CONSUMER = {"fetch.min.bytes": 1024, "fetch.wait.max.ms": 500,
            "max.partition.fetch.bytes": 1048576, "enable.auto.commit": False}
LIMIT_PREFIX = "bench.limit."


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def partitions(client, topic):
    return sorted(client.list_topics(topic, timeout=10).topics[topic].partitions)


def sample(broker, out, topics):
    admin = AdminClient({"bootstrap.servers": broker})
    every = [TopicPartition(t, p) for t in topics for p in partitions(admin, t)]
    with open(out, "a", buffering=1) as f:
        while True:
            now = time.time()
            # One ListOffsets request for every partition of every topic.
            futures = admin.list_offsets({tp: OffsetSpec.latest() for tp in every},
                                         request_timeout=10)
            totals = dict.fromkeys(topics, 0)
            for tp, future in futures.items():
                totals[tp.topic] += future.result().offset
            totals = [totals[t] for t in topics]
            f.write(" ".join([f"{now:.3f}"] + [str(n) for n in totals]) + "\n")
            time.sleep(max(0.0, 0.05 - (time.time() - now)))


def index_headers(db):
    deadline = time.time() + 20
    while True:
        try:
            conn = sqlite3.connect(db, timeout=10)
            try:
                conn.execute("CREATE INDEX IF NOT EXISTS bench_header_record "
                             "ON header (topition, offset_id)")
                conn.commit()
                return
            finally:
                conn.close()
        except sqlite3.OperationalError as e:
            if time.time() > deadline:
                raise SystemExit(f"cannot index tansu's header table in {db}: {e}")
            time.sleep(0.1)


def ledger_counts(db):
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0]
            sealed = conn.execute("SELECT coalesce(sum(count), 0) FROM merkle_batches").fetchone()[0]
            return rows, sealed
        finally:
            conn.close()
    except sqlite3.Error:
        return 0, 0  # not migrated yet, or busy


def ledger_wait(db, expected, start, deadline_s):
    times = {"first_row_s": None, "all_rows_s": None, "all_sealed_s": None}
    rows = sealed = 0
    while time.time() - start < deadline_s:
        rows, sealed = ledger_counts(db)
        elapsed = round(time.time() - start, 3)
        if rows > 0 and times["first_row_s"] is None:
            times["first_row_s"] = elapsed
        if rows >= expected and times["all_rows_s"] is None:
            times["all_rows_s"] = elapsed
        if sealed >= expected:
            times["all_sealed_s"] = elapsed
            break
        time.sleep(0.05)
    print(json.dumps({"expected": expected, "rows": rows, "sealed": sealed, **times}))


def read_all(broker, topics):
    """Every message of `topics` as (timestamp, topic, partition, key, value, headers)."""
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "bench-reader", **CONSUMER})
    messages = []
    for topic in topics:
        for p in partitions(consumer, topic):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            seen = low
            while seen < high:
                batch = consumer.consume(min(1000, high - seen), 10)
                if not batch:
                    raise SystemExit(f"read: nothing at {topic}/{p}@{seen} within 10 s")
                for msg in batch:
                    if msg.error():
                        raise SystemExit(f"read error: {msg.error()}")
                    seen = msg.offset() + 1
                    messages.append((msg.timestamp()[1], topic, p, msg.key(), msg.value(),
                                     msg.headers()))
    consumer.close()
    messages.sort(key=lambda m: m[0])
    return messages


def create_copies(broker, topics):
    admin = AdminClient({"bootstrap.servers": broker})
    copies = {t: LIMIT_PREFIX + t for t in topics}
    counts = {t: len(partitions(admin, t)) for t in topics}
    futures = admin.create_topics([NewTopic(copies[t], counts[t], 1) for t in topics])
    for future in futures.values():
        future.result(timeout=20)
    return copies


def produce_all(broker, messages, copies):
    failed = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(err)

    producer = Producer({"bootstrap.servers": broker, "queue.buffering.max.messages": 1000000,
                         "queue.buffering.max.kbytes": 1048576, **PRODUCER})
    cpu, started = cpu_seconds(), time.time()
    for _, topic, p, key, value, headers in messages:
        while True:
            try:
                producer.produce(copies[topic], value=value, key=key, headers=headers,
                                 partition=p, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    if producer.flush(120) != 0 or failed:
        raise SystemExit(f"produce limit: {len(failed)} deliveries failed: {failed[:3]}")
    return time.time() - started, cpu_seconds() - cpu


def fetch_all(broker, topic, expected):
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "bench-fetch", **CONSUMER})
    parts = partitions(consumer, topic)
    cpu, started = cpu_seconds(), time.time()
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    seen = nbytes = 0
    while seen < expected:
        # consume() returns at this many messages or at the timeout: never ask for more.
        batch = consumer.consume(min(1000, expected - seen), 10)
        if not batch:
            raise SystemExit(f"fetch limit: {seen} of {expected} messages, then 10 s of nothing")
        for msg in batch:
            if msg.error():
                raise KafkaException(msg.error())
            seen += 1
            nbytes += len(msg.value() or b"")
    elapsed, cpu = time.time() - started, cpu_seconds() - cpu
    consumer.close()
    return seen, nbytes, elapsed, cpu


def limit(broker, sources, fetch_topic):
    messages = read_all(broker, sources)
    copies = create_copies(broker, sources)
    produce_s, produce_cpu = produce_all(broker, messages, copies)
    want = sum(1 for m in messages if m[1] == fetch_topic)
    fetched, fetch_bytes, fetch_s, fetch_cpu = fetch_all(broker, copies[fetch_topic], want)
    print(json.dumps({
        "produced": len(messages),
        "produced_value_bytes": sum(len(m[4] or b"") for m in messages),
        "produce_s": round(produce_s, 3), "produce_cpu_s": round(produce_cpu, 2),
        "fetched": fetched, "fetched_value_bytes": fetch_bytes,
        "fetch_s": round(fetch_s, 3), "fetch_cpu_s": round(fetch_cpu, 2),
    }))


def publish_window(path, baseline, expected):
    """(seconds, events) from the last sample still at `baseline` to the first at `expected`."""
    samples = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            samples.append((float(fields[0]), sum(int(n) for n in fields[1:])))
    start = max((t for t, n in samples if n <= baseline), default=None)
    end = min((t for t, n in samples if n >= expected), default=None)
    if start is None or end is None or end <= start:
        raise SystemExit(f"{path}: the events never went from {baseline} to {expected}")
    return end - start, expected - baseline


def gateway_row(path):
    """The load generator's row of the gateway: sent, ok, errors, achieved/s."""
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) > 5 and fields[1] in ("caracal", "gateway") and fields[2].isdigit():
                return int(fields[2]), int(fields[3]), int(fields[4]), float(fields[5])
    raise SystemExit(f"{path}: no row of the gateway")


def summary(work, baseline, expected):
    seconds, events = publish_window(f"{work}/published.txt", baseline, expected)
    sent, ok, errors, achieved = gateway_row(f"{work}/load.txt")
    with open(f"{work}/ledger.json") as f:
        ledger = json.load(f)
    with open(f"{work}/limit.json") as f:
        lim = json.load(f)
    publish = events / seconds
    produce = lim["produced"] / lim["produce_s"]
    fetch = lim["fetched"] / lim["fetch_s"]
    value_bytes = lim["produced_value_bytes"] / max(lim["produced"], 1)
    print("\nsummary (issue 23): Caracal through Kafka beside the broker's own rates, same "
          "tansu broker, same run")
    print(f"gateway load: {sent} requests measured, {ok} ok, {errors} errors, achieved "
          f"{achieved:.0f}/s; {events} events ({value_bytes:.0f} B values on average) "
          f"acknowledged in {seconds:.2f} s")
    print(f"{'':<34}{'caracal':>12}{'limit':>12}{'ratio':>8}  limit measured as")
    print(f"{'publish, events/s (2 per request)':<34}{publish:>12.0f}{produce:>12.0f}"
          f"{publish / produce:>8.2f}  confluent-kafka produce of the same {lim['produced']} "
          f"messages, acks=all, lz4, linger 10 ms ({lim['produce_cpu_s']:.1f} client CPU s in "
          f"{lim['produce_s']:.2f} s)")
    if ledger["all_rows_s"] is None:
        print(f"gateway -> ledger: only {ledger['rows']} of {ledger['expected']} rows before "
              "the deadline")
        return
    rows = ledger["expected"] / ledger["all_rows_s"]
    print(f"{'gateway -> ledger, rows/s':<34}{rows:>12.0f}{fetch:>12.0f}{rows / fetch:>8.2f}  "
          f"confluent-kafka fetch of the same {lim['fetched']} metering messages "
          f"({lim['fetch_cpu_s']:.1f} client CPU s in {lim['fetch_s']:.2f} s)")
    sealed = ledger["all_sealed_s"]
    print(f"ledger: {ledger['expected']} rows, from its start: first row after "
          f"{ledger['first_row_s']:.2f} s, all rows after {ledger['all_rows_s']:.2f} s, all "
          f"sealed after {'-' if sealed is None else f'{sealed:.2f}'} s")


def main(argv):
    if len(argv) >= 4 and argv[1] == "sample":
        sample(argv[2], argv[3], argv[4:])
    elif len(argv) == 6 and argv[1] == "ledger-wait":
        ledger_wait(argv[2], int(argv[3]), float(argv[4]), float(argv[5]))
    elif len(argv) >= 6 and argv[1] == "limit" and argv[-2] == "--fetch":
        limit(argv[2], argv[3:-2], argv[-1])
    elif len(argv) == 3 and argv[1] == "index-headers":
        index_headers(argv[2])
    elif len(argv) == 5 and argv[1] == "summary":
        summary(argv[2], int(argv[3]), int(argv[4]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
