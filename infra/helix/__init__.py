"""The Helix client: the carrier's wholesale API (HX-AX, EXTERNAL_APIS §2).

- ``client``: ``HelixClient``, the carrier's operations (activate, details, find a line, MDN
  change, status change, cancel, reason codes);
- ``calls``: the one HTTP call path every operation goes through (token, rate limit, calls in
  flight, retries, audit, typed errors);
- ``access_token``: the one OAuth2 token every process shares (Postgres ``token_cache``);
- ``audit``: every call → a redacted ``helix.api_called``;
- ``errors``: the client's exceptions and how a carrier answer maps onto them;
- ``models``: the carrier's answers as small frozen models.
"""
