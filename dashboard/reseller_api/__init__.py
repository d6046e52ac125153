"""The reseller API (``/reseller/v1``): each reseller's own SIMs, SMS, deliveries and endpoints."""
