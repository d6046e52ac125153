"""Reseller webhooks: events a reseller subscribed to → signed POSTs to its endpoints.

- ``consumer``: reads the source topics in batches, claims every (message, endpoint), hands the
  claims to the dispatcher (the flow's entry point, ``simfleet workers webhooks``);
- ``reads``: every type of those topics, handled (the union the consumer dispatches over) or
  ignored with a reason; only the handled ones are decoded;
- ``rules``: pure decisions (who gets which event, the exact bodies, the retry schedule);
- ``targets``: read-side lookups (an event's SIM, reseller, endpoints, signing targets);
- ``claims``: ``webhook_claims``, the durable outbox and lease of every delivery;
- ``dispatch``: the bounded delivery tasks and the sweeper that resumes abandoned claims;
- ``attempts``: one attempt (sign, POST, record the outcome: claim row first, events second);
- ``endpoint_health`` / ``endpoint_health_rules``: delivery outcomes → each endpoint's health
  (``simfleet workers endpoint_health``).
"""
