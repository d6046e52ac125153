-- Per projection and partition: the last offset applied, written in the projection's transaction.
CREATE TABLE projection_checkpoints (
    projection text        NOT NULL,
    topic      text        NOT NULL,
    partition  integer     NOT NULL,
    "offset"   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);
