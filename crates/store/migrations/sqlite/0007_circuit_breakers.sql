-- A circuit breaker per platform, shared by replicas (issue 14 item 4): consecutive transient
-- failures of the platform's token endpoint, how many times in a row it opened, until when it is
-- open and until when a trial call is in flight (both on the database's clock; 0 when not).
-- `version` makes every change a compare-and-swap: the transitions themselves are a pure function
-- in tokenwarden_core::breaker.
CREATE TABLE circuit_breakers (
    breaker     TEXT PRIMARY KEY,
    failures    BIGINT NOT NULL,
    step        BIGINT NOT NULL,
    open_until  BIGINT NOT NULL,
    trial_until BIGINT NOT NULL,
    version     BIGINT NOT NULL
);
