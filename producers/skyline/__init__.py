"""The gateway bridge: Skyline gateways' HTTP pushes → events on ``sms.inbound`` and
``gateway.status``.

- ``bridge``: the HTTP app the gateways push to (``simfleet bridge``); it publishes, answers and
  keeps what it cannot accept on ``gateway.rejected``;
- ``push``: pure parsing of a push into events (JSON push, "SMS to HTTP", generic ``SimpleSms``);
- ``wire``: the push bodies as pydantic models (also the bridge's OpenAPI request bodies);
- ``content``: an SMS's content (base64 or plain, with or without the gateway's header block);
- ``push_fields``: checks of a push's fields shared by the parsers (``PushRejected``);
- ``arrivals``: where and when an SMS arrived (receiving number, first arrival), settled before
  publishing.
"""
