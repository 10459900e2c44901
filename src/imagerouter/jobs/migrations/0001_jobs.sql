-- The job store on PostgreSQL, version 1: accounts, API keys, jobs and their attempts, the
-- event log, the credit ledger and idempotency keys. Times are unix seconds (double
-- precision), as in the SQLite store; request, result, error and event data are jsonb.

CREATE TABLE accounts (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    balance     bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at  double precision NOT NULL
);

CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    account_id   text NOT NULL REFERENCES accounts (id),
    secret_hash  text NOT NULL,
    name         text,
    created_at   double precision NOT NULL,
    revoked_at   double precision
);
CREATE INDEX api_keys_by_account ON api_keys (account_id, created_at);

CREATE TABLE jobs (
    seq              bigserial UNIQUE,
    id               text PRIMARY KEY,
    account_id       text NOT NULL REFERENCES accounts (id),
    status           text NOT NULL
                     CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'canceled')),
    request          jsonb NOT NULL,
    price            bigint NOT NULL CHECK (price >= 0),
    refunded         bigint NOT NULL DEFAULT 0,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    deadline_at      double precision NOT NULL,
    started_at       double precision,
    finished_at      double precision,
    runs             integer NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_expires    double precision,
    result           jsonb,
    error            jsonb,
    idempotency_key  text
);
-- Workers claim the oldest queued jobs (FOR UPDATE SKIP LOCKED) and sweep expired leases.
CREATE INDEX jobs_queued ON jobs (seq) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_expires) WHERE status = 'processing';
CREATE INDEX jobs_by_account ON jobs (account_id, seq);
CREATE INDEX jobs_by_account_status ON jobs (account_id, status, seq);

CREATE TABLE attempts (
    id           bigserial PRIMARY KEY,
    job_id       text NOT NULL REFERENCES jobs (id),
    run          integer NOT NULL,
    provider     text NOT NULL,
    outcome      text NOT NULL,
    started_at   double precision,
    latency_ms   double precision,
    error_class  text,
    error        text,
    status       integer,
    retry_after  double precision,
    reason       text
);
CREATE INDEX attempts_by_job ON attempts (job_id, id);

-- Event ids are taken from this one-row counter, under its row lock, as the last write of
-- every transaction that writes events. The lock is held until commit, so ids are dense and
-- committed in id order: a reader that sees event n has already seen every event below n,
-- which makes "id > Last-Event-ID" a safe resume point on every replica.
CREATE TABLE event_clock (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_id  bigint NOT NULL
);
INSERT INTO event_clock (one, last_id) VALUES (true, 0);

CREATE TABLE events (
    id          bigint PRIMARY KEY,
    job_id      text NOT NULL,
    account_id  text NOT NULL,
    type        text NOT NULL,
    data        jsonb NOT NULL,
    created_at  double precision NOT NULL
);
CREATE INDEX events_by_account ON events (account_id, id);
CREATE INDEX events_by_job ON events (job_id, id);

CREATE TABLE ledger (
    id             bigserial PRIMARY KEY,
    account_id     text NOT NULL REFERENCES accounts (id),
    job_id         text,
    kind           text NOT NULL CHECK (kind IN ('grant', 'debit', 'refund')),
    amount         bigint NOT NULL,
    balance_after  bigint NOT NULL,
    note           text,
    created_at     double precision NOT NULL
);
-- A job is debited once and refunded at most once, whatever races.
CREATE UNIQUE INDEX ledger_once_per_job ON ledger (job_id, kind) WHERE job_id IS NOT NULL;
CREATE INDEX ledger_by_account ON ledger (account_id, id);

CREATE TABLE idempotency (
    account_id    text NOT NULL,
    key           text NOT NULL,
    fingerprint   text NOT NULL,
    state         text NOT NULL CHECK (state IN ('processing', 'done')),
    job_id        text,
    status_code   integer,
    response      jsonb,
    locked_until  double precision,
    created_at    double precision NOT NULL,
    expires_at    double precision NOT NULL,
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
