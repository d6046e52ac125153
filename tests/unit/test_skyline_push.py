"""The gateway push parsers against every example of EXTERNAL_APIS §1.1 / §1.3."""

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from events.sms import SmsDeliveryReported, SmsReceived
from producers.skyline.content import decode_content, scts_time
from producers.skyline.parsed_push import gateway_id_from
from producers.skyline.push import (
    parse_http_push,
    parse_json_push,
    parse_simple_push,
)
from producers.skyline.push_fields import PushRejected

NOW = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)
GW = "00-30-f1-01-02-03"
ICCID = "8961234567890123456"
REAL_DEVICE_TEXT = (
    'Sender: Google\r\nReceiver: "24.01" \r\nSMSC: 34607008077\r\nSCTS: 25110914563088\r\n'
    'Slot: "01"\r\n\r\nG-666266 is your Google verification code.'
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def recv_sms(*rows: list[Any]) -> bytes:
    return json.dumps({"type": "recv-sms", "sms_num": len(rows), "sms": list(rows)}).encode()


def one_sms(*row: Any) -> SmsReceived:
    push = parse_json_push(recv_sms(list(row)), gateway_id=GW, now=NOW)
    assert len(push.sms) == 1
    assert push.reports == ()
    assert push.statuses == ()
    return push.sms[0]


def rejected(call: Any, *args: Any, **kwargs: Any) -> PushRejected:
    with pytest.raises(PushRejected) as info:
        call(*args, **kwargs)
    return info.value


# --- (a) JSON push -----------------------------------------------------------------------------


def test_the_documented_json_push_gives_an_sms_and_a_delivery_report() -> None:
    body = recv_sms(
        [0, "1.01", 1763900000, "+15551230000", "5559870000", "VkVSSUZZIEFCQzEyMw=="],
        [1, "2.01", 1763900005, "+15551230001", "5559870001", "0 25112312132000"],
    )
    push = parse_json_push(body, gateway_id=GW, now=NOW)

    (sms,) = push.sms
    assert sms.data.body == "VERIFY ABC123"
    assert sms.data.sender == "+15551230000"
    assert sms.data.to == "+15559870000"
    assert sms.data.port == "1.01"
    assert sms.data.gateway_id == GW
    assert sms.data.received_at == datetime(2025, 11, 23, 12, 13, 20, tzinfo=UTC)
    assert sms.subject == "+15559870000"
    assert sms.source == "simfleet/gateway-bridge"
    assert sms.time == NOW
    (report,) = push.reports
    assert isinstance(report, SmsDeliveryReported)
    assert report.data.status_code == 0
    assert report.data.smsc == "+15551230001"
    assert report.data.recipient == "+15559870001"
    assert report.data.raw == "0 25112312132000"
    assert report.subject == "+15559870001"
    assert [e.id for e in push.events] == [sms.id, report.id]


def test_a_delivery_report_is_never_an_sms() -> None:
    push = parse_json_push(
        recv_sms([1, "1.01", 1763900005, "34607008077", "5559870001", b64("2 25110914563088")]),
        gateway_id=GW,
        now=NOW,
    )
    assert push.sms == ()
    assert push.reports[0].data.status_code == 2


def test_the_real_device_row_with_header_block_and_appended_fields() -> None:
    sms = one_sms(
        0, "24.01", 1762700191, "Google", "", b64(REAL_DEVICE_TEXT), ICCID, "505012345678901", "86155307"
    )  # fmt: skip
    assert sms.data.body == "G-666266 is your Google verification code."
    assert sms.data.sender == "Google"
    assert sms.data.to is None
    assert sms.data.iccid == ICCID
    assert sms.data.imsi == "505012345678901"
    assert sms.data.port == "24.01"
    assert sms.subject == ICCID  # no number: the SIM is the key
    assert sms.data.received_at == datetime(2025, 11, 9, 14, 56, 31, tzinfo=UTC)


def test_a_bare_base64_body_and_plain_text_content_are_accepted() -> None:
    assert one_sms(0, "1.01", 1, "+15551230000", "", b64("Your code is 123456")).data.body == (
        "Your code is 123456"
    )
    assert one_sms(0, "1.01", 1, "+15551230000", "", "hello").data.body == "hello"
    assert one_sms(0, "1.01", 1, "+15551230000", "", "Hi there, 5 min").data.body == (
        "Hi there, 5 min"
    )


@pytest.mark.parametrize("plain", ["STOP", "Test", "Ok12", "HELP1", "1234", "thanks"])
def test_plain_words_that_happen_to_be_valid_base64_stay_as_sent(plain: str) -> None:
    assert decode_content(plain).text == plain


@pytest.mark.parametrize(
    "message", ["VERIFY ABC123", "Привет", "Да", "你好世界", "👨\u200d👩\u200d👧 ok", "hi!", "ok"]
)
def test_base64_of_any_utf8_text_is_decoded(message: str) -> None:
    assert decode_content(b64(message)).text == message


def test_base64_that_decodes_to_binary_noise_is_kept_as_plain_text() -> None:
    noise = base64.b64encode(bytes([0, 1, 2, 200, 201, 7])).decode()
    assert decode_content(noise).text == noise


def test_a_plain_text_header_block_is_split_too() -> None:
    content = decode_content(REAL_DEVICE_TEXT)
    assert content.text == "G-666266 is your Google verification code."
    assert content.headers["receiver"] == "24.01"
    assert content.headers["scts"] == "25110914563088"


def test_a_message_with_paragraphs_is_not_mistaken_for_a_header_block() -> None:
    text = "Note: pick up at 5\r\n\r\nThanks"
    assert decode_content(b64(text)).text == text
    assert decode_content(text).text == text


@pytest.mark.parametrize("port", ["12.sp256.101", "61A", "1.01"])
def test_exotic_and_letter_port_names_are_kept(port: str) -> None:
    assert one_sms(0, port, 1763900000, "+15551230000", "", "hi").data.port == port


def test_timestamp_zero_means_the_header_time_else_now() -> None:
    with_header = one_sms(0, "24.01", 0, "Google", "", b64(REAL_DEVICE_TEXT))
    assert with_header.data.received_at == datetime(2025, 11, 9, 14, 56, 30, tzinfo=UTC)
    bare = one_sms(0, "1.01", 0, "+15551230000", "", b64("no header"))
    assert bare.data.received_at == NOW


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5551230000", "+15551230000"),
        ("15551230000", "+15551230000"),
        ("+15551230000", "+15551230000"),
        ("+442071234567", "+442071234567"),
        ("Google", "Google"),
        ("T-Mobile", "T-Mobile"),
        ("22395", "22395"),
        ("34607008077", "34607008077"),
    ],
)
def test_senders_are_e164_when_they_are_numbers_else_as_sent(raw: str, expected: str) -> None:
    assert one_sms(0, "1.01", 1, raw, "", "x").data.sender == expected


def test_an_iccid_with_the_filler_nibble_is_cleaned() -> None:
    sms = one_sms(0, "1.01", 1, "Google", "", "x", ICCID + "F", "", "")
    assert sms.data.iccid == ICCID
    assert sms.data.imsi is None


def test_the_same_push_twice_gives_the_same_ids() -> None:
    body = recv_sms(
        [0, "1.01", 1763900000, "+15551230000", "5559870000", "VkVSSUZZIEFCQzEyMw=="],
        [0, "1.02", 0, "Google", "", b64(REAL_DEVICE_TEXT)],
    )
    first = parse_json_push(body, gateway_id=GW, now=NOW)
    again = parse_json_push(body, gateway_id=GW, now=datetime(2026, 3, 1, tzinfo=UTC))
    assert [e.id for e in first.events] == [e.id for e in again.events]
    assert len({e.id for e in first.events}) == 2


def test_an_already_parsed_mapping_is_accepted() -> None:
    push = parse_json_push(json.loads(recv_sms([0, "1.01", 1, "Google", "", "x"])), gateway_id=GW, now=NOW)  # fmt: skip
    assert len(push.sms) == 1


def test_an_empty_recv_sms_is_an_empty_push() -> None:
    assert parse_json_push(recv_sms(), gateway_id=GW, now=NOW).events == ()


# --- dev-status / port-status ------------------------------------------------------------------


def dev_status(**overrides: Any) -> dict[str, Any]:
    push: dict[str, Any] = {
        "type": "dev-status",
        "seq": 7,
        "mac": "00:30:F1:01:02:03",
        "max-ports": 32,
        "max-slots": 4,
        "status": [
            {
                "port": "1.01",
                "st": 3,
                "iccid": ICCID,
                "imsi": "310260000000001",
                "sn": "5559870000",
            },
            {"port": "2.01", "st": "0 No SIM", "iccid": "", "imsi": "", "sn": ""},
        ],
    }
    push.update(overrides)
    return push


def test_dev_status_gives_one_report_of_every_port() -> None:
    push = parse_json_push(json.dumps(dev_status()).encode(), gateway_id="unknown", now=NOW)
    (status,) = push.statuses
    assert push.sms == ()
    assert push.reports == ()
    assert status.data.gateway_id == GW  # its own mac, normalised
    assert status.subject == GW
    assert status.data.seq == 7
    assert status.data.max_ports == 32
    first, second = status.data.ports
    assert (first.port, first.status_code, first.iccid, first.number) == (
        "1.01", 3, ICCID, "+15559870000"
    )  # fmt: skip
    assert first.imsi == "310260000000001"
    assert (second.status_code, second.iccid, second.imsi, second.number) == (0, None, None, None)


@pytest.mark.parametrize("slots_key", ["max-slots", "max-slot"])
def test_dev_status_takes_max_slots_as_the_manual_and_real_devices_write_it(slots_key: str) -> None:
    push = dev_status()
    del push["max-slots"]
    push[slots_key] = 4
    assert parse_json_push(push, gateway_id="x", now=NOW).statuses[0].data.ports


def test_st_written_as_text_is_read_by_its_leading_integer() -> None:
    push = dev_status(status=[{"port": "1.01", "st": "3 OK"}])
    assert parse_json_push(push, gateway_id="x", now=NOW).statuses[0].data.ports[0].status_code == 3


def test_dev_status_without_mac_uses_the_gateway_id_of_the_url() -> None:
    push = dev_status()
    del push["mac"]
    assert parse_json_push(push, gateway_id="512-1", now=NOW).statuses[0].data.gateway_id == "512-1"


def test_a_flat_port_status_is_a_one_port_report() -> None:
    push = {"type": "port-status", "port": "61A", "st": 6, "iccid": ICCID, "imsi": "1", "sn": ""}
    (status,) = parse_json_push(push, gateway_id=GW, now=NOW).statuses
    assert [(p.port, p.status_code, p.iccid) for p in status.data.ports] == [("61A", 6, ICCID)]
    assert status.data.gateway_id == GW


def test_junk_in_a_status_row_hint_is_dropped_not_rejected() -> None:
    push = dev_status(status=[{"port": "1.01", "st": 9, "iccid": "ERROR", "sn": "unknown"}])
    port = parse_json_push(push, gateway_id="x", now=NOW).statuses[0].data.ports[0]
    assert (port.iccid, port.number) == (None, None)


# --- (b) "SMS to HTTP" text push ---------------------------------------------------------------


def http_body(text: str = "VERIFY ABC123", sender: str = "15551230000") -> bytes:
    return (
        f'Sender: {sender}\r\nReceiver: "61.01"\r\nSMSC: 12063130004\r\nSCTS: 26020412000000\r\n'
        f'Slot: "01"\r\n\r\n{text}'
    ).encode()


def test_the_text_push_takes_port_sender_mac_and_iccid_from_the_query() -> None:
    query = {"port": "61A", "sender": "+15551230000", "mac": "00-30-F1-01-02-03", "iccid": ICCID}
    (sms,) = parse_http_push(query, http_body(), now=NOW).sms
    assert sms.data.body == "VERIFY ABC123"
    assert sms.data.port == "61A"
    assert sms.data.sender == "+15551230000"
    assert sms.data.gateway_id == GW
    assert sms.data.iccid == ICCID
    assert sms.data.to is None
    assert sms.subject == ICCID
    assert sms.data.received_at == datetime(2026, 2, 4, 12, 0, tzinfo=UTC)  # from SCTS


def test_the_text_push_falls_back_to_its_header_lines_and_the_gateway_id_param() -> None:
    (sms,) = parse_http_push({"gateway_id": "512-1"}, http_body(), now=NOW).sms
    assert sms.data.sender == "+15551230000"
    assert sms.data.port == "61.01"
    assert sms.data.gateway_id == "512-1"
    (anonymous,) = parse_http_push({"sender": "Google"}, b"just text", now=NOW).sms
    assert anonymous.data.gateway_id == "unknown"
    assert anonymous.data.body == "just text"
    assert anonymous.data.received_at == NOW


def test_a_retried_text_push_keeps_its_id() -> None:
    query = {"port": "61A", "sender": "+15551230000", "iccid": ICCID}
    first = parse_http_push(query, http_body(), now=NOW).sms[0]
    later = parse_http_push(query, http_body(), now=datetime(2026, 2, 4, 12, 5, tzinfo=UTC)).sms[0]
    assert first.id == later.id


def test_gateway_id_prefers_the_mac() -> None:
    assert gateway_id_from({"mac": "0030F1010203", "gateway_id": "x"}) == GW
    assert gateway_id_from({"gateway_id": " 512-1 "}) == "512-1"
    assert gateway_id_from({}) == "unknown"


def test_scts_is_read_as_utc_and_nonsense_is_ignored() -> None:
    assert scts_time("25110914563088") == datetime(2025, 11, 9, 14, 56, 30, tzinfo=UTC)
    assert scts_time("25139914563088") is None
    assert scts_time("soon") is None


# --- the generic format ------------------------------------------------------------------------


def test_the_simple_format_takes_one_object_or_a_list() -> None:
    one = {"to": "5559870000", "from": "+15551230000", "body": "hi", "received_at": "2026-02-04T12:00:00Z"}  # fmt: skip
    (sms,) = parse_simple_push(json.dumps(one).encode(), now=NOW).sms
    assert (sms.data.to, sms.data.sender, sms.data.body) == ("+15559870000", "+15551230000", "hi")
    assert sms.data.received_at == NOW
    assert sms.data.gateway_id == "unknown"
    many = [one, {**one, "body": "again", "gateway_id": "gw-2", "port": "2.01", "received_at": 1}]
    push = parse_simple_push(json.dumps(many).encode(), now=NOW, gateway_id="gw-1")
    assert [(s.data.gateway_id, s.data.port) for s in push.sms] == [
        ("gw-1", None),
        ("gw-2", "2.01"),
    ]
    assert push.sms[1].data.received_at == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert (
        parse_simple_push({"from": "Google", "body": "x"}, now=NOW).sms[0].data.received_at == NOW
    )


# --- rejections --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty body"),
        (b"   ", "empty body"),
        (b"{not json", "not valid JSON"),
        (b'{"type": "recv-sms"', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not"),
    ],
)
def test_unreadable_bodies_are_400(body: bytes, fragment: str) -> None:
    err = rejected(parse_json_push, body, gateway_id=GW, now=NOW)
    assert err.status_code == 400
    assert fragment in err.reason


VALID_ROW: list[Any] = [0, "1.01", 1763900000, "+15551230000", "5559870000", "aGk="]


def with_row(index: int, value: Any) -> bytes:
    row = list(VALID_ROW)
    row[index] = value
    return recv_sms(row)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"[1, 2]", "JSON object with a 'type'"),
        (b'"recv-sms"', "JSON object with a 'type'"),
        (b'{"sms": []}', "missing 'type'"),
        (b'{"type": "status-report", "rpts": []}', "unsupported push type 'status-report'"),
        (b'{"type": "recv-sms"}', "sms: Field required"),
        (b'{"type": "recv-sms", "sms": {"a": 1}}', "sms: Input should be a valid list"),
        (b'{"type": "recv-sms", "sms": [[0, "1.01"]]}', "sms row 1: expected [flag"),
        (with_row(0, 2), "sms row 1: unknown flag 2"),
        (with_row(0, "0"), "sms row 1: unknown flag '0'"),
        (with_row(2, "yesterday"), "sms row 1: time must be unix seconds, got str"),
        (with_row(2, -5), "out of range"),
        (with_row(2, 1763900000.5), "time must be unix seconds, got float"),
        (with_row(0, True), "sms row 1: flag must be 0 or 1, got True"),
        (b'{"type": "recv-sms", "sms": [5]}', "sms.0: Input should be a valid list"),
        (with_row(3, None), "sms row 1: from: sender must be a string, got null"),
        (with_row(3, ""), "sms row 1: from: sender is empty"),
        (with_row(3, 15551230000), "sms row 1: from: sender must be a string, got int"),
        (with_row(1, 7), "sms row 1: port must be a string, got int"),
        (with_row(5, None), "sms row 1: content must be a string, got null"),
        (with_row(4, 5559870000), "receiving number must be a string, got int"),
        (recv_sms([*VALID_ROW, "not-an-iccid"]), "sms row 1: iccid: invalid ICCID"),
        (
            recv_sms([1, "1.01", 1, "smsc", "5559870000", "delivered"]),
            "starts with its status code",
        ),
        (recv_sms([1, "1.01", 1, "smsc", "", "0 1"]), "names its recipient"),
        (b'{"type": "dev-status", "status": [{"port": "1.01", "st": "OK"}]}', "status.0.st"),
        (b'{"type": "dev-status", "status": [{"st": 3}]}', "status.0.port: Field required"),
        (b'{"type": "dev-status", "status": "all good"}', "status: Input should be a valid list"),
        (b'{"type": "port-status", "port": "1.01"}', "st: Field required"),
    ],
)
def test_wrong_shapes_and_types_are_422_with_a_human_reason(body: bytes, fragment: str) -> None:
    err = rejected(parse_json_push, body, gateway_id=GW, now=NOW)
    assert err.status_code == 422
    assert fragment in err.reason


@pytest.mark.parametrize(
    ("index", "value", "fragment"),
    [
        (4, "555", "to: invalid receiving number '555'"),
        (4, "+1 555 CALL NOW", "invalid receiving number"),
        (4, "25559870000", "invalid receiving number"),
        (3, "<script>", "from: invalid sender '<script>'"),
        (3, "12", "invalid sender"),
    ],
)
def test_invalid_numbers_are_422(index: int, value: str, fragment: str) -> None:
    err = rejected(parse_json_push, with_row(index, value), gateway_id=GW, now=NOW)
    assert err.status_code == 422
    assert fragment in err.reason


def test_the_text_push_rejections() -> None:
    no_sender = rejected(parse_http_push, {}, b"hello", now=NOW)
    assert (no_sender.status_code, no_sender.reason) == (
        422, "missing sender: query 'sender' or a 'Sender:' header line"
    )  # fmt: skip
    not_text = rejected(parse_http_push, {"sender": "Google"}, b"\xff\xfe\xfa", now=NOW)
    assert (not_text.status_code, not_text.reason) == (400, "body is not UTF-8 text")
    bad_iccid = rejected(parse_http_push, {"sender": "Google", "iccid": "89"}, b"x", now=NOW)
    assert bad_iccid.status_code == 422
    assert "invalid ICCID" in bad_iccid.reason


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"nope", "not valid JSON"),
        (b"[1]", "item 1: an SMS is a JSON object"),
        (b'{"to": "5559870000", "body": "x"}', "from: Field required"),
        (b'{"from": 5551230000, "body": "x"}', "from: Input should be a valid string"),
        (b'[{"from": "Google", "body": "x"}, {"from": "Google"}]', "item 2: body: Field required"),
        (b'{"from": "Google", "body": "x", "received_at": "2026-02-04T12:00:00"}', "received_at"),
        (b'{"from": "Google", "to": "12", "body": "x"}', "to: invalid receiving number"),
    ],
)
def test_the_simple_format_rejections(body: bytes, fragment: str) -> None:
    err = rejected(parse_simple_push, body, now=NOW)
    assert err.status_code == (400 if fragment == "not valid JSON" else 422)
    assert fragment in err.reason
