-- Postgres store schema (mirrors migrations/sqlite/0001_init.sql). Times are BIGINT microseconds since the Unix epoch (UTC);
-- money is BIGINT micro-units; ids are UUID text.

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    agent_type  TEXT NOT NULL,
    parent_id   TEXT REFERENCES agents(id),
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    metadata    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX agents_parent ON agents(parent_id);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    key_hash    BYTEA NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_agent ON api_keys(agent_id);

CREATE TABLE policies (
    id           TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL REFERENCES agents(id),
    version      BIGINT NOT NULL CHECK (version >= 1),
    limit_micros BIGINT NOT NULL CHECK (limit_micros >= 0),
    currency     TEXT NOT NULL,
    time_window  TEXT NOT NULL,
    window_type  TEXT NOT NULL,
    allow        TEXT NOT NULL,
    active       BIGINT NOT NULL,
    deleted      BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX policies_agent ON policies(agent_id);

CREATE TABLE policy_versions (
    policy_id  TEXT NOT NULL REFERENCES policies(id),
    version    BIGINT NOT NULL,
    action     TEXT NOT NULL,
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
    id      BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO pricebook_meta (id, version) VALUES (1, 0);

CREATE TABLE outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
