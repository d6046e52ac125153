-- Which SIM an SMS reached: the ICCID the gateway reported, else the SIM that had the
-- receiving number at that time, else the SIM last seen in the gateway port. No match = unknown.
CREATE VIEW inbound_sms_resolved AS
SELECT m.*,
       coalesce(m.iccid, n.iccid, gp.iccid) AS sim_iccid,
       coalesce(m.iccid, n.iccid, gp.iccid) IS NULL AS unknown_sim
FROM inbound_sms m
LEFT JOIN LATERAL (
    SELECT sn.iccid FROM sim_numbers sn
    WHERE sn.e164 = m.to_number AND sn.valid_from <= m.received_at
      AND (sn.valid_to IS NULL OR sn.valid_to > m.received_at)
    ORDER BY sn.valid_from DESC
    LIMIT 1
) n ON true
LEFT JOIN gateway_ports gp ON gp.gateway_id = m.gateway_id AND gp.port = m.port;
