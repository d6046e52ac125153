"""The gateway bridge: Skyline gateways' HTTP pushes → events on ``sms.inbound`` and
``gateway.status``.

- ``bridge``: the HTTP app the gateways push to (``simfleet bridge``): its routes and errors;
- ``intake``: what every push goes through around its parser: the gateway secret, the size
  limit, publishing (200 once the broker acknowledged) and keeping a refused push on
  ``gateway.rejected``, secret removed;
- ``openapi``: the bridge's API description (bodies, answers, security schemes, wire models);
- ``push``: pure parsing of a push into events, its three entry points (JSON push, "SMS to
  HTTP", generic ``SimpleSms``); the JSON push's kinds in ``recv_sms`` (SMS and delivery report
  rows) and ``port_status`` (``dev-status``, ``port-status``); what they all share (the result,
  the SMS event, the gateway a push names) in ``parsed_push``;
- ``wire``: the push bodies as pydantic models (also the bridge's OpenAPI request bodies);
- ``content``: an SMS's content (base64 or plain, with or without the gateway's header block);
- ``push_fields``: checks of a push's fields shared by the parsers (``PushRejected``);
- ``arrivals``: where and when an SMS arrived (receiving number, first arrival), settled before
  publishing.
"""
