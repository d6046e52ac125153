CREATE TABLE helix_api_logs (
    call_id                  text PRIMARY KEY,
    operation                text             NOT NULL,
    iccid                    text,
    mobility_subscription_id text,
    method                   text             NOT NULL,
    url                      text             NOT NULL,
    status_code              integer,
    ok                       boolean          NOT NULL,
    duration_ms              double precision NOT NULL,
    request_body             jsonb,
    response_body            jsonb,
    error                    text,
    called_at                timestamptz      NOT NULL
);
CREATE INDEX helix_api_logs_called ON helix_api_logs (called_at DESC);
CREATE INDEX helix_api_logs_iccid ON helix_api_logs (iccid, called_at DESC);
