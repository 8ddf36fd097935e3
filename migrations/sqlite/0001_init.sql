-- Embedded store schema. Times are INTEGER microseconds since the Unix epoch (UTC);
-- money is INTEGER micro-units; ids are UUID text.

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    agent_type  TEXT NOT NULL,
    parent_id   TEXT REFERENCES agents(id),
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    metadata    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX agents_parent ON agents(parent_id);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    key_hash    BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX api_keys_agent ON api_keys(agent_id);

CREATE TABLE policies (
    id           TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL REFERENCES agents(id),
    version      INTEGER NOT NULL CHECK (version >= 1),
    limit_micros INTEGER NOT NULL CHECK (limit_micros >= 0),
    currency     TEXT NOT NULL,
    time_window  TEXT NOT NULL,
    window_type  TEXT NOT NULL,
    allow        TEXT NOT NULL,
    active       INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX policies_agent ON policies(agent_id);

CREATE TABLE policy_versions (
    policy_id  TEXT NOT NULL REFERENCES policies(id),
    version    INTEGER NOT NULL,
    action     TEXT NOT NULL,
    before     TEXT,
    after      TEXT,
    actor      TEXT NOT NULL,
    reason     TEXT,
    at         INTEGER NOT NULL,
    PRIMARY KEY (policy_id, version)
);

CREATE TABLE prices (
    provider   TEXT NOT NULL,
    resource   TEXT NOT NULL,
    price      TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (provider, resource)
);

CREATE TABLE pricebook_meta (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO pricebook_meta (id, version) VALUES (1, 0);

CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
