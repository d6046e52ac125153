-- The permanent copy of every event (replay source beyond Kafka retention).
CREATE TABLE event_log (
    id            text PRIMARY KEY,
    topic         text        NOT NULL,
    partition     integer     NOT NULL,
    "offset"      bigint      NOT NULL,
    type          text        NOT NULL,
    key           text,
    subject       text        NOT NULL,
    correlationid text        NOT NULL,
    time          timestamptz NOT NULL,
    payload       jsonb       NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_log_subject_time ON event_log (subject, time);
CREATE INDEX event_log_type_time ON event_log (type, time);
CREATE INDEX event_log_position ON event_log (topic, partition, "offset");
CREATE INDEX event_log_correlation ON event_log (correlationid);
