-- Facts only (what the gateway reported), so a rebuild from events gives identical rows;
-- the SIM an SMS belongs to is resolved by the inbound_sms_resolved view.
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
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbound_sms_received ON inbound_sms (received_at DESC);
CREATE INDEX inbound_sms_to ON inbound_sms (to_number, received_at DESC);
CREATE INDEX inbound_sms_iccid ON inbound_sms (iccid, received_at DESC);
