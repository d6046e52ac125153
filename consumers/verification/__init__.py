"""Number verification: every new number proves it receives SMS before it counts as online.

- ``consumer``: number.assigned | verification.requested → a Skyline "VERIFY <code>" from
  another SIM → verification.sent | verification.skipped; the code arriving on sms.inbound →
  number.online (``simfleet workers verification``);
- ``verifier``: the sending side the handlers share (senders, rate limits, once per request);
- ``rules``: pure decisions (codes, recognising a reply, choosing a sender, retries);
- ``store``: the flow's state (``verifications``, ``verification_replies``);
- ``guards``: rate limits per sender and number, suspect senders;
- ``waiting``: verifications waiting for a sender;
- ``sweeps`` / ``reply_backlog``: the flow's clock side (expiry, retries, resumption), run by
  the scheduler only once the reply consumer has read every SMS pushed before an expiry.
"""
