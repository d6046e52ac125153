-- Inbound silence (issue #11): an online SIM that receives no SMS for a while.
--
-- sim_silence is coordination state, not a projection (replay keeps it): the time each SIM last
-- received an SMS (written by consumers/silence.py from sms.received) and whether it is silent
-- now (set by the scheduler's sweep, cleared by the next SMS). Both sides change a row only
-- under its row lock, so a silence is announced once and every announced silence resumes once.
CREATE TABLE sim_silence (
    iccid            text PRIMARY KEY,
    state            text        NOT NULL DEFAULT 'receiving'
        CHECK (state IN ('receiving', 'silent')),
    last_sms_at      timestamptz,             -- sms.received event time (the bridge's clock)
    last_message_id  text,
    silent_since     timestamptz,             -- the quiet began then (last SMS or verification)
    silent_event_id  text,                    -- the sim.inbound_silent of the current silence
    resumed_at       timestamptz,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX sim_silence_silent ON sim_silence (iccid) WHERE state = 'silent';

-- The read side: silent since when (NULL: receiving, or never online).
ALTER TABLE sims ADD COLUMN inbound_silent_since timestamptz;
CREATE INDEX sims_inbound_silent ON sims (inbound_silent_since) WHERE inbound_silent_since IS NOT NULL;
