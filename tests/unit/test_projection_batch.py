"""A fetched batch as the projection runner decodes it: a compacting projection's records keep
only its row, yet the whole event and the headers are there for a dead letter; a value that
does not decode is set aside with its reason; each partition's last offset is kept."""

from datetime import UTC, datetime

from aiokafka import ConsumerRecord, TopicPartition

from events import codec
from events.sms import SmsDeliveryReported, SmsReceived
from events.topics import SMS_INBOUND
from projections.batches import Fetched
from projections.sms import InboundSmsProjection

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
TOPIC = SMS_INBOUND.name


def sms() -> SmsReceived:
    return SmsReceived.create(
        producer="simfleet/test",
        time=T0,
        gateway_id="gw-1",
        port="1.01",
        sender="+15551230000",
        to="+15559870000",
        body="hello",
        received_at=T0,
    )


def report() -> SmsDeliveryReported:
    return SmsDeliveryReported.create(
        producer="simfleet/test",
        time=T0,
        gateway_id="gw-1",
        smsc="+15550000000",
        recipient="+15559870000",
        status_code=0,
        raw="ok",
        reported_at=T0,
    )


def consumer_record(offset: int, value: bytes, headers: dict[str, str]) -> ConsumerRecord:
    return ConsumerRecord(
        TOPIC, 0, offset, 0, 0, b"key", value, None, 3, len(value),
        tuple((k, v.encode()) for k, v in headers.items()),
    )  # fmt: skip


def test_a_compacting_projection_keeps_the_row_and_can_still_read_the_event_and_headers() -> None:
    event, delivery = sms(), report()
    raw = {
        TopicPartition(TOPIC, 0): [
            consumer_record(7, codec.encode(event), codec.headers_for(event)),
            consumer_record(8, b"\x00{not json", {}),
            consumer_record(9, codec.encode(delivery), codec.headers_for(delivery)),
        ]
    }
    projection = InboundSmsProjection()

    batch = Fetched.decode(
        raw, {TOPIC: codec.decoder_for(SMS_INBOUND)}, {TOPIC: projection.compact}
    )

    assert batch.last == {TopicPartition(TOPIC, 0): 9}
    first, second = batch.records
    assert first.kept == (
        event.id, T0, "gw-1", "1.01", "+15551230000", "+15559870000", None, "hello",
    )  # fmt: skip
    assert second.kept is None  # a delivery report: nothing for inbound_sms
    assert first.event == event  # read again from the value, for a dead letter
    assert first.headers == codec.headers_for(event)
    assert (first.offset, first.key, first.value) == (7, b"key", codec.encode(event))
    [(bad, reason)] = batch.undecodable
    assert bad.offset == 8
    assert "not JSON" in str(reason)


def test_without_compacting_a_record_keeps_the_decoded_event() -> None:
    event = sms()
    raw = {TopicPartition(TOPIC, 2): [consumer_record(0, codec.encode(event), {})]}

    batch = Fetched.decode(raw, {TOPIC: codec.decoder_for(SMS_INBOUND)})

    [record] = batch.records
    assert record.kept == event
    assert record.event is record.kept
    assert record.headers == {}
