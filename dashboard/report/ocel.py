"""OCEL 2.0 JSON (object-centric event log) for process-mining tools.

Objects: sagas, business keys (``order.id=42`` becomes object ``order:42`` of type ``order``)
and broker messages (record refs ``event:...``). Events: saga steps, typed by step name.
Event-to-object qualifiers: ``part-of`` (the saga), ``acts-on`` / ``compensates`` (the business
keys, depending on the step type) and ``message``. Attribute values are strings, as the OCEL 2.0
JSON schema requires; their declared types say how to read them. Report metadata sits under
an extra top-level ``sagalens`` key, which the schema allows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

EVENT_ATTRIBUTES = (
    ("step_type", "string"),
    ("service", "string"),
    ("outcome", "string"),
    ("attempts", "integer"),
    ("end", "time"),
    ("actor", "string"),
    ("origin", "string"),
    ("resource", "string"),
    ("compensates", "string"),
    ("error", "string"),
)
SAGA_ATTRIBUTES = (
    ("saga_type", "string"),
    ("status", "string"),
    ("explanation", "string"),
    ("failed_step", "string"),
    ("finding_kinds", "string"),
)
_EPOCH = "1970-01-01T00:00:00.000Z"


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def business_object(key: str) -> tuple[str, str] | None:
    """``order.id=42`` -> (``order:42``, ``order``); None for unusable or redacted keys."""
    name, sep, value = key.partition("=")
    if not sep or not value or "[REDACTED" in value:
        return None
    otype = name[:-3] if name.endswith(".id") else name
    return f"{otype}:{value}", otype


class OcelBuilder:
    """Builds OCEL text in parts: events stream to the file, objects to a side spool."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._event_types: set[str] = set()
        self._object_types: set[str] = {"saga"}
        self._first = {"event": True, "object": True}
        self._header: Mapping[str, Any] = {}
        self._saga_key = ""
        self._saga_objects: list[str] = []

    def begin(self) -> Iterator[str]:
        yield '{"events":['

    def between(self) -> Iterator[str]:
        yield '],"objects":['

    def _part(self, part: str, value: Mapping[str, Any]) -> tuple[str, str]:
        sep = "" if self._first[part] else ","
        self._first[part] = False
        return part, sep + "\n" + _dump(value)

    def feed(self, records: Iterable[tuple[str, Mapping[str, Any]]]) -> Iterator[tuple[str, str]]:
        """``("event" | "object", text)`` parts for the two arrays."""
        pending: Mapping[str, Any] | None = None
        kinds: list[str] = []
        for kind, data in records:
            if kind == "header":
                self._header = data
            elif kind == "saga":
                if pending is not None:
                    yield self._part("object", self._saga_object(pending, kinds))
                pending, kinds = data, []
                yield from self._start_saga(data)
            elif kind == "step":
                yield from self._step(data)
            elif kind == "finding":
                kinds.append(str(data.get("kind", "")))
        if pending is not None:
            yield self._part("object", self._saga_object(pending, kinds))

    def _start_saga(self, saga: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        self._saga_key = str(saga.get("saga_key", ""))
        self._saga_objects = []
        for key in saga.get("business_keys") or ():
            found = business_object(str(key))
            if found is None:
                continue
            oid, otype = found
            self._saga_objects.append(oid)
            if oid not in self._seen:
                self._seen.add(oid)
                self._object_types.add(otype)
                yield self._part(
                    "object", {"id": oid, "type": otype, "attributes": [], "relationships": []}
                )

    def _saga_object(self, saga: Mapping[str, Any], finding_kinds: list[str]) -> dict[str, Any]:
        at = str(saga.get("started") or _EPOCH)
        status_at = str(saga.get("ended") or saga.get("last_progress") or at)
        values = {
            "saga_type": saga.get("saga_type", ""),
            "explanation": saga.get("explanation", ""),
            "failed_step": saga.get("failed_step", ""),
            "finding_kinds": ",".join(sorted(set(finding_kinds))),
        }
        attributes = [{"name": k, "value": str(v), "time": at} for k, v in values.items()]
        attributes.append(
            {"name": "status", "value": str(saga.get("status", "")), "time": status_at}
        )
        return {
            "id": "saga:" + str(saga.get("saga_key", "")),
            "type": "saga",
            "attributes": attributes,
            "relationships": [
                {"objectId": o, "qualifier": "correlated-by"} for o in self._saga_objects
            ],
        }

    def _step(self, step: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        name = str(step.get("name", ""))
        self._event_types.add(name)
        compensation = step.get("step_type") == "compensation"
        relationships = [{"objectId": "saga:" + self._saga_key, "qualifier": "part-of"}]
        relationships += [
            {"objectId": o, "qualifier": "compensates" if compensation else "acts-on"}
            for o in self._saga_objects
        ]
        for ref in step.get("records") or ():
            if not str(ref).startswith("event:"):
                continue
            relationships.append({"objectId": str(ref), "qualifier": "message"})
            if ref not in self._seen:
                self._seen.add(str(ref))
                self._object_types.add("message")
                yield self._part(
                    "object",
                    {
                        "id": str(ref),
                        "type": "message",
                        "attributes": [],
                        "relationships": [
                            {"objectId": "saga:" + self._saga_key, "qualifier": "part-of"}
                        ],
                    },
                )
        values = {k: step.get(k, "") for k, _ in EVENT_ATTRIBUTES}
        values["end"] = step.get("end") or ""
        yield self._part(
            "event",
            {
                "id": f"{self._saga_key}/step/{step.get('seq', 0)}",
                "type": name,
                "time": str(step.get("start") or _EPOCH),
                "attributes": [{"name": k, "value": str(v)} for k, v in values.items() if v != ""],
                "relationships": relationships,
            },
        )

    def end(self, data_digest: str) -> Iterator[str]:
        """Close the arrays and add the type declarations and report metadata."""
        object_types = []
        for otype in sorted(self._object_types):
            attrs = [{"name": n, "type": t} for n, t in SAGA_ATTRIBUTES] if otype == "saga" else []
            object_types.append({"name": otype, "attributes": attrs})
        event_types = [
            {"name": etype, "attributes": [{"name": n, "type": t} for n, t in EVENT_ATTRIBUTES]}
            for etype in sorted(self._event_types)
        ]
        meta = {**self._header, "data_digest": data_digest}
        yield "\n],\n"
        yield '"objectTypes":' + _dump(object_types) + ",\n"
        yield '"eventTypes":' + _dump(event_types) + ",\n"
        yield '"sagalens":' + _dump(meta) + "}\n"
