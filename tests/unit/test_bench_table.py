"""The benchmark table: rows kept per (benchmark, broker), both brokers side by side."""

from __future__ import annotations

from bench.__main__ import merged, namesakes, side_by_side

ROW = {"processes": 1, "unit": "push/s", "target": ">= 60% of bare endpoint"}


def test_a_partial_run_replaces_its_rows_per_broker_and_keeps_the_rest() -> None:
    saved = [
        {**ROW, "benchmark": "bridge pushes/s", "broker": "kafka", "value": 1},
        {**ROW, "benchmark": "bridge pushes/s", "broker": "tansu", "value": 2},
        {**ROW, "benchmark": "replay", "broker": "kafka", "value": 3},
    ]
    fresh = [
        {**ROW, "benchmark": "bridge pushes/s", "broker": "tansu", "value": 20},
        {**ROW, "benchmark": "start", "broker": "tansu", "value": 4},
    ]
    assert [(r["benchmark"], r["broker"], r["value"]) for r in merged(saved, fresh)] == [
        ("bridge pushes/s", "kafka", 1),
        ("bridge pushes/s", "tansu", 20),
        ("replay", "kafka", 3),
        ("start", "tansu", 4),
    ]


def test_each_benchmark_is_one_line_with_a_value_per_broker() -> None:
    rows = [
        {**ROW, "benchmark": "bridge pushes/s", "broker": "kafka", "value": 2500, "ratio": "61%"},
        {**ROW, "benchmark": "bridge pushes/s", "broker": "tansu", "value": 2700, "ratio": "66%"},
    ]
    lines = side_by_side(rows).splitlines()
    assert lines[0] == "| benchmark | processes | unit | target | Apache Kafka | Tansu |"
    assert lines[2] == (
        "| bridge pushes/s | 1 | push/s | >= 60% of bare endpoint | 2,500 (61%) | 2,700 (66%) |"
    )


def test_a_row_another_module_already_gave_for_that_broker_is_named() -> None:
    earlier = [{**ROW, "benchmark": "consumer CPU", "broker": "kafka", "value": 226}]
    again = [
        {**ROW, "benchmark": "consumer CPU", "broker": "kafka", "value": 371},
        {**ROW, "benchmark": "consumer CPU", "broker": "tansu", "value": 389},
    ]
    assert namesakes(earlier, again) == ["consumer CPU"]
    assert namesakes(earlier, again[1:]) == []
