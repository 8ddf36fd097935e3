-- The ledger, its sealed Merkle batches, the signing keys, the consumers' leases and offsets,
-- the audit log and the DLQ replay record: the tables of migrations/sqlite/0002_ledger.sql.
-- Times are BIGINT Unix microseconds (UTC); ids are UUID.

-- One row per ledger event, keyed exactly: `event_id` is unique (sinks are idempotent on it)
-- and so is (partition, seq) (contiguous numbering per partition). A partitioned table's
-- unique constraints must contain its partition key, so ledger_events cannot enforce either on
-- its own; this small table does, and says where each event's row lives. The writer inserts
-- here first (ON CONFLICT (event_id) DO NOTHING RETURNING event_id tells it which events are
-- new) and then the rows, in the same transaction.
CREATE TABLE ledger_event_ids (
    event_id    UUID PRIMARY KEY,
    "partition" INTEGER NOT NULL,
    seq         BIGINT NOT NULL CHECK (seq >= 0),
    occurred_at BIGINT NOT NULL,
    UNIQUE ("partition", seq)
);

-- One row per metering event, numbered contiguously per partition of caracal.metering.events.
-- `datum` is the Avro binary datum as published: the Merkle leaf's bytes. The other columns
-- are decoded from it for queries; verification checks that they still agree with it.
-- Partitioned by month of `occurred_at` (UTC): one partition per calendar month, named
-- ledger_events_YYYYMM, created by caracal_ensure_ledger_partition() (the writer calls it for
-- the months of a batch before inserting it; this migration creates the months around now).
-- The DEFAULT partition is a safety net that stays empty while the writer does its job: a
-- month's partition cannot be created while the default partition holds rows of that month.
CREATE TABLE ledger_events (
    "partition"         INTEGER NOT NULL,
    seq                 BIGINT NOT NULL CHECK (seq >= 0),
    event_id            UUID NOT NULL,
    occurred_at         BIGINT NOT NULL,
    request_id          UUID NOT NULL,
    agent_id            UUID NOT NULL,
    parent_id           UUID,
    root_agent_id       UUID NOT NULL,
    -- Nearest first; the last is the root.
    ancestor_ids        UUID[] NOT NULL,
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
    PRIMARY KEY ("partition", seq, occurred_at)
) PARTITION BY RANGE (occurred_at);
-- `ledger query` (an agent's or a tree's events over a time range) and summaries.
CREATE INDEX ledger_events_agent_time ON ledger_events (agent_id, occurred_at);
CREATE INDEX ledger_events_root_time ON ledger_events (root_agent_id, occurred_at);

CREATE TABLE ledger_events_default PARTITION OF ledger_events DEFAULT;

-- Creates (if missing) the monthly partition holding `at_micros` and returns its name. Cheap
-- when the partition exists (a catalog lookup, no lock); creation is serialised by a
-- transaction-scoped advisory lock, so concurrent writers and PgBouncer are both fine.
CREATE FUNCTION caracal_ensure_ledger_partition(at_micros BIGINT) RETURNS TEXT
LANGUAGE plpgsql AS $$
DECLARE
    month_start TIMESTAMP := date_trunc('month', to_timestamp(at_micros / 1000000.0) AT TIME ZONE 'UTC');
    name TEXT := 'ledger_events_' || to_char(month_start, 'YYYYMM');
    lower_micros BIGINT := (extract(epoch FROM month_start) * 1000000)::BIGINT;
    upper_micros BIGINT := (extract(epoch FROM month_start + INTERVAL '1 month') * 1000000)::BIGINT;
BEGIN
    IF to_regclass(quote_ident(name)) IS NOT NULL THEN
        RETURN name;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('caracal.ledger_events.partitions'));
    IF to_regclass(quote_ident(name)) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF ledger_events FOR VALUES FROM (%s) TO (%s)',
            name, lower_micros, upper_micros);
    END IF;
    RETURN name;
END;
$$;

-- Last month, this month and the next two, so a fresh install writes without creating any.
SELECT caracal_ensure_ledger_partition(
    (extract(epoch FROM date_trunc('month', now() AT TIME ZONE 'UTC') + m * INTERVAL '1 month')
        * 1000000)::BIGINT)
FROM generate_series(-1, 2) AS m;

-- A sealed batch: rows first_seq..=last_seq of one partition under one signed root.
CREATE TABLE merkle_batches (
    "partition"  INTEGER NOT NULL,
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
    PRIMARY KEY ("partition", batch_number),
    UNIQUE ("partition", first_seq)
);
-- `merkle verify-range`: batches whose time range meets [start, end).
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
    "partition" INTEGER NOT NULL,
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

-- Every event of every topic, once (idempotent on the message's place in the log and on its
-- event id). Exports read it by id: writers must make ids visible in increasing order (one
-- writer per partition lease, or the outbox's advisory-lock discipline).
CREATE TABLE audit_log (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         TEXT NOT NULL,
    "partition"   INTEGER NOT NULL,
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
    "partition"  INTEGER NOT NULL,
    "offset"     BIGINT NOT NULL,
    replayed_at  BIGINT NOT NULL,
    PRIMARY KEY ("partition", "offset")
);
