-- Postgres store schema: the same tables as migrations/sqlite/0001_init.sql.
-- Times are BIGINT microseconds since the Unix epoch (UTC), as in the embedded store, so both
-- stores map rows the same way; money is BIGINT micro-units; ids are UUID. JSON values
-- (metadata, allow lists, prices, outbox events, policy snapshots) are TEXT holding the exact
-- serde_json output: jsonb would renumber and reorder them, and nothing queries inside them.

CREATE TABLE agents (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    agent_type  TEXT NOT NULL,
    parent_id   UUID REFERENCES agents(id),
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    metadata    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX agents_parent ON agents (parent_id);
CREATE INDEX agents_created ON agents (created_at, id);

CREATE TABLE api_keys (
    id          UUID PRIMARY KEY,
    agent_id    UUID NOT NULL REFERENCES agents(id),
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    key_hash    BYTEA NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_agent ON api_keys (agent_id);

CREATE TABLE policies (
    id           UUID PRIMARY KEY,
    agent_id     UUID NOT NULL REFERENCES agents(id),
    version      BIGINT NOT NULL CHECK (version >= 1),
    limit_micros BIGINT NOT NULL CHECK (limit_micros >= 0),
    currency     TEXT NOT NULL,
    time_window  TEXT NOT NULL,
    window_type  TEXT NOT NULL,
    allow        TEXT NOT NULL,
    active       BOOLEAN NOT NULL,
    deleted      BOOLEAN NOT NULL DEFAULT false,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX policies_agent ON policies (agent_id) WHERE NOT deleted;

CREATE TABLE policy_versions (
    policy_id  UUID NOT NULL REFERENCES policies(id),
    version    BIGINT NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('created', 'updated', 'deleted')),
    before     TEXT,
    after      TEXT,
    actor      TEXT NOT NULL,
    reason     TEXT,
    at         BIGINT NOT NULL,
    PRIMARY KEY (policy_id, version)
);

CREATE TABLE prices (
    provider   TEXT NOT NULL,
    resource   TEXT NOT NULL,
    price      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (provider, resource)
);

CREATE TABLE pricebook_meta (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO pricebook_meta (id, version) VALUES (1, 0);

-- Admin events waiting for the relay. Writers serialise on a transaction-scoped advisory lock
-- (see src/store/postgres/mod.rs), so ids become visible in increasing order and a reader
-- resuming after id N never skips a row that commits later with a smaller id.
CREATE TABLE outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
