"""Operational alerts: checks on the read tables and the broker → incidents → the alert sink.

It emits no events, so it is no producer: it reads what the flows wrote and tells an operator
(``ALERT_WEBHOOK_URL``) once when an incident opens and once when it resolves.

- ``incidents``: ``Alerts``, one round every ``ALERT_INTERVAL_S`` in the scheduler process
  (``alert_incidents``: one open incident per check and key, each message sent once);
- ``checks``: the checks (disabled endpoints, verification failures, Helix errors, consumer lag,
  silent SIMs) and what a check is;
- ``rotation_checks``: the daily rotation's checks (the fleet-wide pause, an incomplete day).
"""
