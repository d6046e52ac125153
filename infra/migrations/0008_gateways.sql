CREATE TABLE gateways (
    gateway_id   text PRIMARY KEY,
    mac_address  text UNIQUE,
    code         text,
    name         text,
    location     text,
    host         text,
    total_ports  integer,
    last_seen_at timestamptz
);

CREATE TABLE gateway_ports (
    gateway_id  text        NOT NULL REFERENCES gateways (gateway_id),
    port        text        NOT NULL,
    status_code integer     NOT NULL,
    iccid       text,
    imsi        text,
    number      text,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (gateway_id, port)
);
CREATE INDEX gateway_ports_iccid ON gateway_ports (iccid);
