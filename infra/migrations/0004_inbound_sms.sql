CREATE TABLE inbound_sms (
    id             bigserial PRIMARY KEY,
    message_id     text        NOT NULL UNIQUE,
    received_at    timestamptz NOT NULL,
    gateway_id     text        NOT NULL,
    port           text,
    sender         text        NOT NULL,
    to_number      text,
    iccid          text,
    body           text        NOT NULL,
    unknown_number boolean     NOT NULL DEFAULT false,
    is_verification boolean    NOT NULL DEFAULT false,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbound_sms_received ON inbound_sms (received_at DESC);
CREATE INDEX inbound_sms_to ON inbound_sms (to_number, received_at DESC);
CREATE INDEX inbound_sms_iccid ON inbound_sms (iccid, received_at DESC);
