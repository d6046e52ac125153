-- SMS pushed without a time of their own (a text push without SCTS, a recv-sms row whose time
-- is 0) are dated by the bridge on arrival. A gateway retrying such a push (no 200 seen) must
-- not make a second SMS: the first arrival of each (gateway, port, SIM, sender, receiver, text)
-- is kept here and a retry within SIMFLEET_BRIDGE_RETRY_WINDOW_S gets that same time, hence the
-- same event id. Written by producers/sms_arrivals.py (the bridge); rows older than the window
-- serve nothing and are deleted by the retention cleanup.
CREATE TABLE sms_arrivals (
    fingerprint text        PRIMARY KEY,
    received_at timestamptz NOT NULL
);
CREATE INDEX sms_arrivals_received_at ON sms_arrivals (received_at);
