"""The saga definitions file: parsed, validated and indexed for the analysis core.

Everything in the file is optional; ``SagaConfig()`` is the inferred-everything default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.analysis.names import match_key

NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
}
DEFAULT_STALL_AFTER_NS = 5 * NS_PER_UNIT["m"]
CORRELATION_SOURCES = ("attribute", "cloudevents", "json")
# span/log attributes that carry saga identity by convention or framework
IDENTITY_ATTRIBUTES = (
    "saga.id",
    "temporalWorkflowID",
    "durabletask.task.instance_id",
    "messaging.masstransit.saga_id",
    "messaging.masstransit.correlation_id",
    "nservicebus.saga.saga_id",
    "nservicebus.conversation_id",
    "axon.sagaIdentifier",
)


class ConfigError(ValueError):
    """The definitions file is malformed; the message names the offending field."""


def parse_duration(value: object) -> int:
    """Parse ``"250ms"``, ``"30s"``, ``"5m"``, ``"1h30m"`` (or plain seconds) into nanoseconds."""
    if isinstance(value, bool):
        raise ConfigError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"duration must not be negative: {value!r}")
        return int(value * NS_PER_UNIT["s"])
    if not isinstance(value, str):
        raise ConfigError(f"not a duration: {value!r}")
    text = value.strip().lower()
    if not text:
        raise ConfigError("empty duration")
    total = 0
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and (text[j].isdigit() or text[j] == "."):
            j += 1
        if j == i:
            raise ConfigError(f"not a duration: {value!r} (expected e.g. 250ms, 30s, 5m, 1h)")
        number = text[i:j]
        while j < len(text) and text[j].isspace():
            j += 1
        k = j
        while k < len(text) and text[k].isalpha():
            k += 1
        unit = text[j:k]
        if unit not in NS_PER_UNIT:
            raise ConfigError(
                f"unknown duration unit {unit!r} in {value!r} (use ns, us, ms, s, m, h, d)"
            )
        try:
            amount = float(number)
        except ValueError:
            raise ConfigError(f"not a duration: {value!r}") from None
        total += int(amount * NS_PER_UNIT[unit])
        i = k
    return total


@dataclass(frozen=True, slots=True)
class StepDefinition:
    name: str
    compensation: str = ""
    timeout_ns: int = 0


@dataclass(frozen=True, slots=True)
class SagaDefinition:
    name: str
    steps: tuple[StepDefinition, ...] = ()
    completes_on: tuple[str, ...] = ()
    fails_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CorrelationRule:
    """Where a business key may be found: an attribute, a CloudEvents extension or a JSON path."""

    source: str  # CORRELATION_SOURCES
    path: str
    key: str = ""  # label of the identity key; rules sharing a label merge sagas


@dataclass(slots=True)
class SagaConfig:
    """Validated definitions file plus the lookup tables the core needs."""

    stall_after_ns: int = DEFAULT_STALL_AFTER_NS
    correlation: tuple[CorrelationRule, ...] = ()
    sagas: dict[str, SagaDefinition] = field(default_factory=dict)
    stall_multiplier: float = 3.0  # k in k × learned p99
    stall_min_samples: int = 20  # learned percentiles are trusted from this many samples on
    # derived indexes (match key -> ...), rebuilt in __post_init__
    compensation_of: dict[str, str] = field(init=False, repr=False, compare=False)
    # saga type -> match key -> the spelling the file uses, so steps found under several
    # spellings (reserve_inventory, ReserveInventory) are stored under one name
    spellings: dict[str, dict[str, str]] = field(init=False, repr=False, compare=False)
    attribute_rules: tuple[CorrelationRule, ...] = field(init=False, repr=False, compare=False)
    # every attribute name that may carry identity: lets most spans be skipped in one check
    identity_attributes: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.compensation_of = {}
        self.spellings = {}
        for saga_name in sorted(self.sagas):
            saga = self.sagas[saga_name]
            spelling = self.spellings.setdefault(saga_name, {})
            for step in saga.steps:
                spelling.setdefault(match_key(step.name), step.name)
                if step.compensation:
                    spelling.setdefault(match_key(step.compensation), step.compensation)
                    self.compensation_of.setdefault(match_key(step.compensation), step.name)
            for name in (*saga.completes_on, *saga.fails_on):
                spelling.setdefault(match_key(name), name)
        labels = [rule.key for rule in self.correlation]
        if labels and not all(labels):
            default = next(
                (r.path for r in self.correlation if r.source == "attribute"),
                self.correlation[0].path,
            )
            self.correlation = tuple(
                CorrelationRule(r.source, r.path, r.key or default) for r in self.correlation
            )
        self.attribute_rules = tuple(r for r in self.correlation if r.source == "attribute")
        self.identity_attributes = frozenset(IDENTITY_ATTRIBUTES) | {
            r.path for r in self.attribute_rules
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> SagaConfig:
        """Parse the definitions file (already loaded from YAML); raise ConfigError on bad input."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ConfigError(f"definitions file: expected a mapping, got {_kind(d)}")
        _no_unknown(
            d,
            {"stall_after", "correlation", "sagas", "stall_multiplier", "stall_min_samples"}
            | set(OTHER_SECTIONS),
            "",
        )
        stall_after = DEFAULT_STALL_AFTER_NS
        if "stall_after" in d:
            stall_after = _duration(d["stall_after"], "stall_after")
            if stall_after <= 0:
                raise ConfigError("stall_after: must be positive")
        multiplier = 3.0
        if "stall_multiplier" in d:
            raw = d["stall_multiplier"]
            if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
                raise ConfigError(f"stall_multiplier: expected a positive number, got {raw!r}")
            multiplier = float(raw)
        min_samples = 20
        if "stall_min_samples" in d:
            raw = d["stall_min_samples"]
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
                raise ConfigError(f"stall_min_samples: expected a positive integer, got {raw!r}")
            min_samples = raw
        return cls(
            stall_after_ns=stall_after,
            correlation=_correlation(d.get("correlation")),
            sagas=_sagas(d.get("sagas")),
            stall_multiplier=multiplier,
            stall_min_samples=min_samples,
        )

    def definition_for(self, saga_type: str) -> SagaDefinition | None:
        """The declared definition of a saga type, if any."""
        return self.sagas.get(saga_type)


# sections of the same file that other parts read: broker taps and audit report redaction
OTHER_SECTIONS = ("taps", "redaction")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _no_unknown(d: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in d:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(
                f"{where}: unknown field (expected one of {', '.join(sorted(allowed))})"
            )


def _duration(value: Any, path: str) -> int:
    try:
        return parse_duration(value)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: expected a non-empty string, got {value!r}")
    return value.strip()


def _names(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (_name(value, path),)
    if not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list of names, got {_kind(value)}")
    return tuple(_name(item, f"{path}[{i}]") for i, item in enumerate(value))


def _correlation(value: Any) -> tuple[CorrelationRule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"correlation: expected a list, got {_kind(value)}")
    rules = []
    for i, item in enumerate(value):
        path = f"correlation[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{path}: expected a mapping like {{attribute: order.id}}")
        sources = [s for s in CORRELATION_SOURCES if s in item]
        _no_unknown(item, {*CORRELATION_SOURCES, "key"}, path)
        if len(sources) != 1:
            raise ConfigError(f"{path}: needs exactly one of attribute, cloudevents, json")
        source = sources[0]
        where = _name(item[source], f"{path}.{source}")
        if source == "json" and not where.startswith("data"):
            raise ConfigError(f"{path}.json: path must start with 'data' (e.g. data.orderId)")
        key = _name(item["key"], f"{path}.key") if "key" in item else ""
        rules.append(CorrelationRule(source, where, key))
    return tuple(rules)


def _sagas(value: Any) -> dict[str, SagaDefinition]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"sagas: expected a mapping of saga type to definition, got {_kind(value)}"
        )
    out: dict[str, SagaDefinition] = {}
    for saga_name, body in value.items():
        path = f"sagas.{saga_name}"
        name = _name(saga_name, path)
        if body is None:
            body = {}
        if not isinstance(body, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_kind(body)}")
        _no_unknown(body, {"steps", "completes_on", "fails_on"}, path)
        out[name] = SagaDefinition(
            name=name,
            steps=_steps(body.get("steps"), f"{path}.steps"),
            completes_on=_names(body.get("completes_on"), f"{path}.completes_on"),
            fails_on=_names(body.get("fails_on"), f"{path}.fails_on"),
        )
    return out


def _steps(value: Any, path: str) -> tuple[StepDefinition, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list, got {_kind(value)}")
    steps = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: expected a mapping with a name, got {_kind(item)}")
        _no_unknown(item, {"name", "compensation", "timeout"}, where)
        if "name" not in item:
            raise ConfigError(f"{where}.name: missing")
        name = _name(item["name"], f"{where}.name")
        if name in seen:
            raise ConfigError(f"{where}.name: step {name!r} declared twice")
        seen.add(name)
        compensation = ""
        if item.get("compensation") is not None:
            compensation = _name(item["compensation"], f"{where}.compensation")
        timeout = 0
        if item.get("timeout") is not None:
            timeout = _duration(item["timeout"], f"{where}.timeout")
            if timeout <= 0:
                raise ConfigError(f"{where}.timeout: must be positive")
        steps.append(StepDefinition(name, compensation, timeout))
    return tuple(steps)
