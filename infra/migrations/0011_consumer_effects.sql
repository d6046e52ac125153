-- The effects ledger (consumers/effects.py): per consumer and cause event, whether the side
-- effect was attempted and, once final, the outcome event it produced. A redelivered or
-- re-published cause re-emits the stored outcome instead of calling the carrier again.
CREATE TABLE consumer_effects (
    consumer   text        NOT NULL,
    event_id   text        NOT NULL,
    outcome    jsonb,                          -- NULL: attempted, no final outcome yet
    done_at    timestamptz,
    attempts   integer     NOT NULL DEFAULT 1, -- deliveries of the cause seen by the consumer
    started_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
