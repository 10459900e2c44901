-- Version 5: the windows the processes were given (providers' Retry-After cooldowns, webhook
-- receivers' pauses), kept so that a restarted or new replica holds off until they end.

CREATE TABLE windows (
    kind      text NOT NULL,
    name      text NOT NULL,
    until_at  double precision NOT NULL,
    record    text NOT NULL,
    PRIMARY KEY (kind, name)
);
