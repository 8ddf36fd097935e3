-- Postgres schema of the ledger (mirrors migrations/sqlite/0002_ledger.sql). The ledger,
-- its sealed Merkle batches, the signing keys, the consumers' leases and offsets,
-- the audit log and the DLQ replay record. Times are Unix microseconds (UTC).

-- One row per metering event, numbered contiguously per partition of caracal.metering.events.
-- `datum` is the Avro binary datum as published: the Merkle leaf's bytes. The other columns
-- are decoded from it for queries; verification checks that they still agree with it.
CREATE TABLE ledger_events (
    "partition"         INT NOT NULL,
    seq                 BIGINT NOT NULL CHECK (seq >= 0),
    event_id            TEXT NOT NULL,
    occurred_at         BIGINT NOT NULL,
    request_id          TEXT NOT NULL,
    agent_id            TEXT NOT NULL,
    parent_id           TEXT,
    root_agent_id       TEXT NOT NULL,
    -- ",<id>,<id>," nearest first, so `LIKE '%,<id>,%'` finds a descendant's events.
    ancestor_ids        TEXT NOT NULL,
    provider            TEXT NOT NULL,
    resource            TEXT NOT NULL,
    operation           TEXT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    calls               BIGINT NOT NULL,
    cost_micros         BIGINT NOT NULL,
    reserved_micros     BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    estimated           BOOLEAN NOT NULL,
    outcome             TEXT NOT NULL,
    source_offset       BIGINT NOT NULL,
    datum               BYTEA NOT NULL,
    -- A partitioned table's keys must include its partition key; (partition, seq) and
    -- event_id are unique through ledger_event_ids below.
    PRIMARY KEY ("partition", seq, occurred_at)
) PARTITION BY RANGE (occurred_at);
-- Monthly partitions (ledger_events_YYYY_MM) are attached by the Postgres ledger writer;
-- rows outside them land in the default partition.
CREATE TABLE ledger_events_default PARTITION OF ledger_events DEFAULT;

-- Every ledger row's identity: idempotency on event_id, and one row per (partition, seq),
-- across all monthly partitions.
CREATE TABLE ledger_event_ids (
    event_id    TEXT PRIMARY KEY,
    "partition" INT NOT NULL,
    seq         BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    UNIQUE ("partition", seq)
);
CREATE INDEX ledger_events_time ON ledger_events (occurred_at);
CREATE INDEX ledger_events_agent_time ON ledger_events (agent_id, occurred_at);

-- A sealed batch: rows first_seq..=last_seq of one partition under one signed root.
CREATE TABLE merkle_batches (
    "partition"  INT NOT NULL,
    batch_number BIGINT NOT NULL CHECK (batch_number >= 0),
    first_seq    BIGINT NOT NULL,
    last_seq     BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    root         BYTEA NOT NULL,
    prev_root    BYTEA NOT NULL,
    first_time   BIGINT NOT NULL,
    last_time    BIGINT NOT NULL,
    key_id       TEXT NOT NULL,
    signature    BYTEA NOT NULL,
    sealed_at    BIGINT NOT NULL,
    PRIMARY KEY ("partition", batch_number)
);
CREATE INDEX merkle_batches_time ON merkle_batches (last_time, first_time);

-- Public keys by id, kept forever so batches signed before a rotation still verify.
CREATE TABLE signing_keys (
    key_id     TEXT PRIMARY KEY,
    algorithm  TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- Partition leases with fencing epochs; the committed offset lives in the lease row and moves
-- only in the same transaction as the consumer's output, checked against owner and epoch.
CREATE TABLE consumer_leases (
    consumer    TEXT NOT NULL,
    topic       TEXT NOT NULL,
    "partition" INT NOT NULL,
    owner       TEXT,
    epoch       BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (consumer, topic, "partition")
);

-- Live replicas of each consumer, so partitions are split evenly between them.
CREATE TABLE consumer_members (
    consumer   TEXT NOT NULL,
    owner      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, owner)
);

-- Every event of every topic, once (idempotent on the message's place in the log).
CREATE TABLE audit_log (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         TEXT NOT NULL,
    "partition"   INT NOT NULL,
    "offset"      BIGINT NOT NULL,
    event_id      TEXT,
    event_type    TEXT NOT NULL,
    occurred_at   BIGINT NOT NULL,
    agent_id      TEXT,
    root_agent_id TEXT,
    record        TEXT NOT NULL,
    logged_at     BIGINT NOT NULL,
    UNIQUE (topic, "partition", "offset")
);
CREATE INDEX audit_log_time ON audit_log (occurred_at);
CREATE UNIQUE INDEX audit_log_event ON audit_log (event_id) WHERE event_id IS NOT NULL;

-- How far each audit export destination has shipped the audit log.
CREATE TABLE audit_exports (
    destination TEXT PRIMARY KEY,
    after_id    BIGINT NOT NULL
);

-- DLQ entries already re-published to their source topic.
CREATE TABLE dlq_replays (
    "partition"  INT NOT NULL,
    "offset"     BIGINT NOT NULL,
    replayed_at  BIGINT NOT NULL,
    PRIMARY KEY ("partition", "offset")
);
