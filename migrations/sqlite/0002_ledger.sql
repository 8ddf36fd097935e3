-- The ledger, its sealed Merkle batches, the signing keys, the consumers' leases and offsets,
-- the audit log and the DLQ replay record. Times are Unix microseconds (UTC).

-- One row per metering event, numbered contiguously per partition of caracal.metering.events.
-- `datum` is the Avro binary datum as published: the Merkle leaf's bytes. The other columns
-- are decoded from it for queries; verification checks that they still agree with it.
CREATE TABLE ledger_events (
    "partition"         INTEGER NOT NULL,
    seq                 INTEGER NOT NULL CHECK (seq >= 0),
    event_id            TEXT NOT NULL UNIQUE,
    occurred_at         INTEGER NOT NULL,
    request_id          TEXT NOT NULL,
    agent_id            TEXT NOT NULL,
    parent_id           TEXT,
    root_agent_id       TEXT NOT NULL,
    -- ",<id>,<id>," nearest first, so `LIKE '%,<id>,%'` finds a descendant's events.
    ancestor_ids        TEXT NOT NULL,
    provider            TEXT NOT NULL,
    resource            TEXT NOT NULL,
    operation           TEXT NOT NULL,
    input_tokens        INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    calls               INTEGER NOT NULL,
    cost_micros         INTEGER NOT NULL,
    reserved_micros     INTEGER NOT NULL,
    currency            TEXT NOT NULL,
    estimated           INTEGER NOT NULL,
    outcome             TEXT NOT NULL,
    source_offset       INTEGER NOT NULL,
    datum               BLOB NOT NULL,
    PRIMARY KEY ("partition", seq)
);
CREATE INDEX ledger_events_time ON ledger_events (occurred_at);
CREATE INDEX ledger_events_agent_time ON ledger_events (agent_id, occurred_at);

-- A sealed batch: rows first_seq..=last_seq of one partition under one signed root.
CREATE TABLE merkle_batches (
    "partition"  INTEGER NOT NULL,
    batch_number INTEGER NOT NULL CHECK (batch_number >= 0),
    first_seq    INTEGER NOT NULL,
    last_seq     INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    root         BLOB NOT NULL,
    prev_root    BLOB NOT NULL,
    first_time   INTEGER NOT NULL,
    last_time    INTEGER NOT NULL,
    key_id       TEXT NOT NULL,
    signature    BLOB NOT NULL,
    sealed_at    INTEGER NOT NULL,
    PRIMARY KEY ("partition", batch_number)
);
CREATE INDEX merkle_batches_time ON merkle_batches (last_time, first_time);

-- Public keys by id, kept forever so batches signed before a rotation still verify.
CREATE TABLE signing_keys (
    key_id     TEXT PRIMARY KEY,
    algorithm  TEXT NOT NULL,
    public_key BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- Partition leases with fencing epochs; the committed offset lives in the lease row and moves
-- only in the same transaction as the consumer's output, checked against owner and epoch.
CREATE TABLE consumer_leases (
    consumer    TEXT NOT NULL,
    topic       TEXT NOT NULL,
    "partition" INTEGER NOT NULL,
    owner       TEXT,
    epoch       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (consumer, topic, "partition")
);

-- Live replicas of each consumer, so partitions are split evenly between them.
CREATE TABLE consumer_members (
    consumer   TEXT NOT NULL,
    owner      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, owner)
);

-- Every event of every topic, once (idempotent on the message's place in the log).
CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    topic         TEXT NOT NULL,
    "partition"   INTEGER NOT NULL,
    "offset"      INTEGER NOT NULL,
    event_id      TEXT,
    event_type    TEXT NOT NULL,
    occurred_at   INTEGER NOT NULL,
    agent_id      TEXT,
    root_agent_id TEXT,
    record        TEXT NOT NULL,
    logged_at     INTEGER NOT NULL,
    UNIQUE (topic, "partition", "offset")
);
CREATE INDEX audit_log_time ON audit_log (occurred_at);
CREATE UNIQUE INDEX audit_log_event ON audit_log (event_id) WHERE event_id IS NOT NULL;

-- How far each audit export destination has shipped the audit log.
CREATE TABLE audit_exports (
    destination TEXT PRIMARY KEY,
    after_id    INTEGER NOT NULL
);

-- DLQ entries already re-published to their source topic.
CREATE TABLE dlq_replays (
    "partition"  INTEGER NOT NULL,
    "offset"     INTEGER NOT NULL,
    replayed_at  INTEGER NOT NULL,
    PRIMARY KEY ("partition", "offset")
);
