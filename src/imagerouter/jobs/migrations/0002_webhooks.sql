-- Version 2: webhooks. Each account's registered URL and signing secrets, the URLs a 410 Gone
-- disabled, one delivery per final job event (enqueued in that event's transaction), and
-- every attempt at sending it.

CREATE TABLE webhook_endpoints (
    account_id  text PRIMARY KEY REFERENCES accounts (id),
    url         text,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL
);

CREATE TABLE webhook_secrets (
    id          bigserial PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts (id),
    secret      text NOT NULL,
    created_at  double precision NOT NULL,
    expires_at  double precision
);
CREATE INDEX webhook_secrets_by_account ON webhook_secrets (account_id, id);

CREATE TABLE webhook_disabled (
    account_id   text NOT NULL,
    url          text NOT NULL,
    disabled_at  double precision NOT NULL,
    reason       text NOT NULL,
    PRIMARY KEY (account_id, url)
);

CREATE TABLE deliveries (
    id               text PRIMARY KEY,
    job_id           text NOT NULL,
    account_id       text NOT NULL,
    event_id         bigint NOT NULL UNIQUE,
    event_type       text NOT NULL,
    url              text NOT NULL,
    status           text NOT NULL
                     CHECK (status IN ('pending', 'delivering', 'succeeded', 'failed', 'disabled')),
    attempts         integer NOT NULL DEFAULT 0,
    step             integer NOT NULL DEFAULT 0,
    replay           boolean NOT NULL DEFAULT false,
    next_attempt_at  double precision,
    lease_owner      text,
    lease_expires    double precision,
    body             text,
    last_error       text,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_leased ON deliveries (lease_expires) WHERE status = 'delivering';
CREATE INDEX deliveries_by_job ON deliveries (job_id, event_id);

CREATE TABLE delivery_attempts (
    id               bigserial PRIMARY KEY,
    delivery_id      text NOT NULL REFERENCES deliveries (id),
    attempt          integer NOT NULL,
    trigger          text NOT NULL,
    scheduled_at     double precision NOT NULL,
    started_at       double precision NOT NULL,
    outcome          text NOT NULL,
    status           integer,
    latency_ms       double precision,
    error            text,
    retry_after      double precision,
    next_delay_s     double precision,
    next_attempt_at  double precision
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, id);
