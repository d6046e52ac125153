-- Every webhook delivery attempt (projection webhook_attempts, from webhook.delivery_*): what
-- the reseller portal shows per delivery — status code, latency, error, the answer's start.
CREATE TABLE webhook_attempts (
    message_id   text        NOT NULL,
    endpoint_id  text        NOT NULL,
    attempt      integer     NOT NULL,
    reseller_id  text        NOT NULL,
    succeeded    boolean     NOT NULL,
    status_code  integer,
    latency_ms   double precision,
    error        text,
    response     text,
    attempted_at timestamptz NOT NULL,
    PRIMARY KEY (message_id, endpoint_id, attempt)
);
CREATE INDEX webhook_attempts_reseller ON webhook_attempts (reseller_id, attempted_at DESC);
