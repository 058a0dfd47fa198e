"""``POST /v1/events`` against a really started collector."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent

from tests.conftest import RunningCollector, running_collector

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
BATCH = "application/cloudevents-batch+json"


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    with running_collector(
        tmp_path_factory.mktemp("events"), "--max-body", "200000", token="s3cret"
    ) as c:
        yield c


def _post(
    c: RunningCollector, body: bytes, headers: dict[str, str], auth: bool = True
) -> httpx.Response:
    all_headers = {**(c.headers() if auth else {}), **headers}
    return httpx.post(c.url + "/v1/events", content=body, headers=all_headers, timeout=10)


def _event(i: str, **extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": i, "source": "/http-test", "type": "OrderPlaced", **extra}


def test_binary_mode_stores_once_with_trace_context(collector: RunningCollector) -> None:
    event = CloudEvent(
        {
            "id": "bin-1",
            "source": "/http-test",
            "type": "OrderPlaced",
            "traceparent": f"00-{TRACE}-{SPAN}-01",
            "correlationid": "order-1",
            "datacontenttype": "application/json",
        },
        {"orderId": 1},
    )
    wire = ce_http.to_binary_event(event)
    first = _post(collector, wire.body, wire.headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 1, "stored": 1, "duplicates": 0, "rejected": []}
    again = _post(collector, wire.body, wire.headers)
    assert again.json() == {"accepted": 1, "stored": 0, "duplicates": 1, "rejected": []}


def test_structured_mode_gzip(collector: RunningCollector) -> None:
    body = gzip.compress(json.dumps(_event("str-1", data={"k": 1})).encode())
    r = _post(
        collector,
        body,
        {"content-type": "application/cloudevents+json", "content-encoding": "gzip"},
    )
    assert r.status_code == 200 and r.json()["stored"] == 1


def test_batch_with_bad_events_stores_the_good_ones(collector: RunningCollector) -> None:
    before = collector.counts()
    items = [
        _event("b-1"),
        {"id": "b-2", "source": "/x"},
        _event("b-3", specversion="0.3"),
        _event("b-4"),
        _event("b-1"),
    ]
    r = _post(collector, json.dumps(items).encode(), {"content-type": BATCH})
    assert r.status_code == 200
    answer = r.json()
    assert (answer["accepted"], answer["stored"], answer["duplicates"]) == (3, 2, 1)
    assert [x["index"] for x in answer["rejected"]] == [1, 2]
    assert (
        "missing required CloudEvents attributes: specversion, type"
        in answer["rejected"][0]["reason"]
    )
    assert "unsupported specversion '0.3'" in answer["rejected"][1]["reason"]
    after = collector.counts()
    assert after["events"] - before["events"] == 2
    assert after["rejections"] - before["rejections"] == 2


def test_null_attributes_are_unset_as_in_the_json_format(collector: RunningCollector) -> None:
    """The specification's own example events carry "subject": null and unset extensions."""
    event = _event("null-1", subject=None, datacontenttype=None, time=None, unsetextension=None)
    r = _post(
        collector, json.dumps(event).encode(), {"content-type": "application/cloudevents+json"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 1
    r = _post(
        collector,
        json.dumps(_event("null-2", id=None)).encode(),
        {"content-type": "application/cloudevents+json"},
    )
    assert r.status_code == 400
    assert r.json()["error"] == "attribute 'id' must be a string, got null"


def test_batch_event_out_of_the_storable_time_range_is_named_by_index(
    collector: RunningCollector,
) -> None:
    items = [_event("range-1"), _event("range-2", time="9999-12-31T23:59:59Z")]
    r = _post(collector, json.dumps(items).encode(), {"content-type": BATCH})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["accepted"], answer["stored"]) == (1, 1)
    assert [x["index"] for x in answer["rejected"]] == [1]
    assert "attribute 'time' is out of range" in answer["rejected"][0]["reason"]


def test_batch_event_whose_data_is_not_unicode_costs_itself_only(
    collector: RunningCollector,
) -> None:
    before = collector.counts()
    # json.dumps writes the lone surrogate as the escape \udc00: valid JSON, not Unicode.
    body = json.dumps([_event("u-1"), _event("u-2", data="\udc00")]).encode()
    r = _post(collector, body, {"content-type": BATCH})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["accepted"], answer["stored"]) == (1, 1)
    assert len(answer["rejected"]) == 1
    assert "unpaired surrogate" in answer["rejected"][0]["reason"]
    assert collector.counts()["events"] - before["events"] == 1


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        (
            {"ce-id": "x", "ce-source": "/s"},
            b"",
            400,
            "missing required CloudEvents attributes: specversion, type",
        ),
        ({"content-type": "application/json"}, b"{}", 400, "not a CloudEvent"),
        ({"content-type": "application/cloudevents+json"}, b"{not json", 400, "not valid JSON"),
        ({"content-type": BATCH}, b'{"id": 1}', 400, "must be a JSON array"),
        (
            {"content-type": "application/cloudevents+json"},
            json.dumps(_event("v", specversion="0.3")).encode(),
            400,
            "unsupported specversion",
        ),
        ({"content-type": "application/cloudevents+xml"}, b"<e/>", 415, "unsupported event format"),
        ({"content-type": BATCH}, b"[" + b" " * 200_001 + b"]", 413, "exceeds the limit"),
        # deeper than the JSON parser recurses: refused, not a server error
        ({"content-type": BATCH}, b"[" * 50_000 + b"]" * 50_000, 400, "nested too deeply"),
        (
            {"content-type": "application/json", **{f"ce-{k}": v for k, v in _event("dd").items()}},
            b"[" * 50_000 + b"]" * 50_000,
            400,
            "data is JSON nested too deeply",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            json.dumps(_event("tn", time=1_700_000_000)).encode(),
            400,
            "attribute 'time' must be an RFC 3339 string, got int",
        ),
        ({"content-type": BATCH, "content-encoding": "br"}, b"[]", 415, "Content-Encoding"),
    ],
)
def test_bad_requests_are_answered_and_recorded(
    collector: RunningCollector, headers: dict[str, str], body: bytes, status: int, message: str
) -> None:
    before = collector.counts()["rejections"]
    r = _post(collector, body, headers)
    assert r.status_code == status
    assert message in r.json()["error"]
    if status in (400, 413):
        reasons = [x["reason"] for x in collector.get("/api/v1/rejections", limit=1)["rejections"]]
        assert collector.counts()["rejections"] == before + 1 and message in reasons[0]


def test_token_is_required(collector: RunningCollector) -> None:
    r = _post(collector, json.dumps([_event("t-1")]).encode(), {"content-type": BATCH}, auth=False)
    assert r.status_code == 401


def test_overload_answers_503_with_retry_after(tmp_path: Path) -> None:
    with running_collector(tmp_path, "--max-queue-rows", "1") as c:
        big = json.dumps([_event(f"o-{i}") for i in range(5000)]).encode()

        def post(_: int) -> httpx.Response:
            return httpx.post(
                c.url + "/v1/events", content=big, headers={"content-type": BATCH}, timeout=30
            )

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(post, range(16)))
        statuses = {r.status_code for r in responses}
        assert statuses == {200, 503}
        assert all(r.headers["retry-after"] == "1" for r in responses if r.status_code == 503)
