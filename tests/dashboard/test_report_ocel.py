"""The OCEL 2.0 export validates against the published JSON schema and maps sagas sensibly."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from dashboard.report.ocel import business_object
from tests.dashboard.reportdata import export, sample_sagas

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "ocel2-schema.json").read_text())


@pytest.fixture
def ocel(tmp_path: Path) -> dict:
    result = export(tmp_path, "ocel")
    return json.loads(result.files[0].read_text(encoding="utf-8"))


def test_validates_against_ocel2_schema(ocel: dict) -> None:
    validator = jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(ocel), key=lambda e: list(e.path))
    assert not errors, errors[0].message
    # jsonschema only checks "format: date-time" with an optional extra installed; check it here.
    rfc3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
    times = [e["time"] for e in ocel["events"]]
    times += [a["time"] for o in ocel["objects"] for a in o["attributes"]]
    assert times and all(rfc3339.match(t) for t in times)


def test_steps_are_events_and_sagas_keys_messages_are_objects(ocel: dict) -> None:
    sagas = list(sample_sagas())
    assert len(ocel["events"]) == sum(len(s["steps"]) for s in sagas)
    types = Counter(o["type"] for o in ocel["objects"])
    assert types["saga"] == len(sagas)
    assert types["order"] > 0 and types["message"] > 0
    ids = [o["id"] for o in ocel["objects"]]
    assert len(ids) == len(set(ids))
    declared = {t["name"] for t in ocel["objectTypes"]}
    assert declared == set(types)
    assert {t["name"] for t in ocel["eventTypes"]} == {e["type"] for e in ocel["events"]}


def test_qualifiers_link_events_to_objects(ocel: dict) -> None:
    ids = {o["id"] for o in ocel["objects"]}
    qualifiers = Counter()
    for event in ocel["events"]:
        for rel in event["relationships"]:
            assert rel["objectId"] in ids
            qualifiers[rel["qualifier"]] += 1
    assert {"part-of", "acts-on", "compensates", "message"} <= set(qualifiers)
    refund = next(e for e in ocel["events"] if e["type"] == "refund_payment")
    assert {"objectId": f"saga:{refund['id'].split('/')[0]}", "qualifier": "part-of"} in refund[
        "relationships"
    ]
    assert any(r["qualifier"] == "compensates" for r in refund["relationships"])


def test_saga_objects_carry_status_and_metadata_is_kept(ocel: dict) -> None:
    saga = next(o for o in ocel["objects"] if o["type"] == "saga")
    names = {a["name"] for a in saga["attributes"]}
    assert {"status", "saga_type"} <= names
    assert all(a["time"].endswith("Z") for a in saga["attributes"])
    assert ocel["sagalens"]["report"]["generated_by"] == "auditor"
    assert len(ocel["sagalens"]["data_digest"]) == 64


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("order.id=42", ("order:42", "order")),
        ("booking.id=B1", ("booking:B1", "booking")),
        ("tenant=acme", ("tenant:acme", "tenant")),
        ("user.email=[REDACTED]", None),
        ("no-equals", None),
        ("order.id=", None),
    ],
)
def test_business_object(key: str, expected: tuple[str, str] | None) -> None:
    assert business_object(key) == expected
