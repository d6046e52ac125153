-- Indexes for the dashboard's read queries (projections/queries.py); the tables stay owned
-- by their projections. text_pattern_ops makes prefix search (LIKE 'x%') indexable under any
-- collation; (filter, iccid) pairs serve the keyset-paginated SIM table per status/reseller.
CREATE INDEX sims_iccid_prefix ON sims (iccid text_pattern_ops);
CREATE INDEX sims_number_prefix ON sims (current_number text_pattern_ops);
CREATE INDEX sims_status_iccid ON sims (status, iccid);
CREATE INDEX sims_reseller_iccid ON sims (reseller_id, iccid);
-- SMS resolved through the gateway port (no ICCID, no known number) are found per port.
CREATE INDEX inbound_sms_port ON inbound_sms (gateway_id, port, received_at DESC);
CREATE INDEX helix_api_logs_operation ON helix_api_logs (operation, called_at DESC);
