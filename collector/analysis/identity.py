"""Saga identity: which records belong together, and under which deterministic key.

Every record yields raw identity keys (``identity_keys``). Keys found on the same record,
records of one trace, traces joined by span links and events joined to a trace by their
``traceparent`` are merged: each connected component of that graph is one group. A group
is a saga when it holds at least one *strong* key; its saga key is the strong key with the
best rule priority, ties broken lexicographically, so it never depends on record order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.analysis.config import CorrelationRule, SagaConfig
from collector.normalize.records import EventRecord, LogRecord, SpanRecord

# identity rule -> priority (lower wins when choosing the saga key)
RULES = (
    "saga.id",
    "temporal",
    "durabletask",
    "masstransit",
    "nservicebus",
    "axon",
    "business",
    "correlation",
    "conversation",
)
_PRIORITY = {rule: i for i, rule in enumerate(RULES)}

# attribute name -> (key prefix, rule)
_SPAN_ATTRIBUTES: dict[str, tuple[str, str]] = {
    "saga.id": ("saga.id", "saga.id"),
    "temporalWorkflowID": ("temporal.workflow", "temporal"),
    "durabletask.task.instance_id": ("durabletask", "durabletask"),
    "messaging.masstransit.saga_id": ("masstransit.saga", "masstransit"),
    "messaging.masstransit.correlation_id": ("corr", "correlation"),
    "nservicebus.saga.saga_id": ("nservicebus.saga", "nservicebus"),
    "nservicebus.conversation_id": ("conv", "conversation"),
    "axon.sagaIdentifier": ("axon.saga", "axon"),
}
# CloudEvents extension names are lowercase alphanumerics
_EVENT_EXTENSIONS: dict[str, tuple[str, str]] = {
    "sagaid": ("saga.id", "saga.id"),
    "correlationid": ("corr", "correlation"),
}
JOIN_PREFIX = "ce"  # event id / causation id: joins records, never makes a saga alone


@dataclass(slots=True)
class _Keys:
    """Keys of one record: (rule priority, key) for strong ones, plain strings for join keys."""

    strong: list[tuple[int, str]] = field(default_factory=list)
    join: list[str] = field(default_factory=list)
    business: str = ""  # "order.id=42"

    # Written out, not generated: see SpanRecord.__init__ (collector/normalize/records.py).
    def __init__(
        self,
        strong: list[tuple[int, str]] | None = None,
        join: list[str] | None = None,
        business: str = "",
    ) -> None:
        self.strong = [] if strong is None else strong
        self.join = [] if join is None else join
        self.business = business


def _text(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value)


def _json_path(data: Any, path: str) -> Any:
    if isinstance(data, str | bytes) and data[:1] in ("{", b"{"):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    parts = path.split(".")
    node = data
    for part in parts[1:]:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _business(
    rules: tuple[CorrelationRule, ...], attrs: dict[str, Any] | None, event: EventRecord | None
) -> tuple[str, str]:
    for rule in rules:
        if rule.source == "attribute":
            value = _text(attrs.get(rule.path)) if attrs is not None else ""
        elif event is None:
            continue
        elif rule.source == "cloudevents":
            value = _text(event.extensions.get(rule.path))
        else:
            value = _text(_json_path(event.data, rule.path))
        if value:
            return rule.key, value
    return "", ""


def _attribute_keys(attrs: dict[str, Any], config: SagaConfig, out: _Keys) -> None:
    # most spans (database calls, HTTP clients) carry no identity: one C-level intersection
    hits = config.identity_attributes.intersection(attrs)
    if not hits:
        return
    business = False
    for name in hits:
        entry = _SPAN_ATTRIBUTES.get(name)
        if entry is None:
            business = True
            continue
        raw = attrs[name]
        value = raw if type(raw) is str else _text(raw)
        if value:
            out.strong.append((_PRIORITY[entry[1]], f"{entry[0]}:{value}"))
    if business:
        label, value = _business(config.attribute_rules, attrs, None)
        if value:
            out.strong.append((_PRIORITY["business"], f"{label}:{value}"))
            out.business = f"{label}={value}"


def _span_column_keys(attrs: dict[str, Any], conversation: str, config: SagaConfig) -> _Keys:
    """The keys a span carries, from the two columns that bear them."""
    out = _Keys()
    _attribute_keys(attrs, config, out)
    if conversation:
        out.strong.append((_PRIORITY["conversation"], f"conv:{conversation}"))
    return out


def span_keys(span: SpanRecord, config: SagaConfig) -> _Keys:
    return _span_column_keys(span.attributes, span.messaging_conversation_id, config)


def log_keys(log: LogRecord, config: SagaConfig) -> _Keys:
    out = _Keys()
    _attribute_keys(log.attributes, config, out)
    return out


def event_keys(event: EventRecord, config: SagaConfig) -> _Keys:
    out = _Keys()
    ext = event.extensions
    for name in _EVENT_EXTENSIONS.keys() & ext.keys():
        value = _text(ext[name])
        if value:
            prefix, rule = _EVENT_EXTENSIONS[name]
            out.strong.append((_PRIORITY[rule], f"{prefix}:{value}"))
    if event.id:
        out.join.append(f"{JOIN_PREFIX}:{event.id}")
    cause = _text(ext.get("causationid"))
    if cause:
        out.join.append(f"{JOIN_PREFIX}:{cause}")
    if config.correlation:
        label, value = _business(config.correlation, None, event)
        if value:
            out.strong.append((_PRIORITY["business"], f"{label}:{value}"))
            out.business = f"{label}={value}"
    return out


def identity_keys(record: SpanRecord | LogRecord | EventRecord, config: SagaConfig) -> list[str]:
    """Raw identity keys one record carries on its own (trace membership aside), sorted.

    E.g. ``saga.id:abc``, ``temporal.workflow:wf-1``, ``conv:xyz``, ``corr:order-42``,
    ``order.id:42`` and, for events, ``ce:<id>`` / ``ce:<causationid>`` join keys.
    """
    if isinstance(record, SpanRecord):
        keys = span_keys(record, config)
    elif isinstance(record, LogRecord):
        keys = log_keys(record, config)
    else:
        keys = event_keys(record, config)
    return sorted({k for _, k in keys.strong} | set(keys.join))


def rule_of(key_priority: int) -> str:
    return RULES[key_priority]


@dataclass(slots=True)
class Resolution:
    """Who belongs to which saga, as found by ``resolve_identity``."""

    trace_saga: dict[str, str]  # trace id -> saga key
    log_saga: list[str]  # parallel to the logs passed in; "" for none
    event_saga: list[str]  # parallel to the events passed in; "" for none
    identity: dict[str, str]  # raw identity key -> saga key
    rule: dict[str, str]  # saga key -> identity rule that produced it
    business: dict[str, set[str]]  # saga key -> {"order.id=42"}
    links: set[tuple[str, str]]  # (from trace, to trace) of every span link between traces


class _Graph:
    """Records and identity keys as nodes, joined by what they share; each connected
    component is one group of records.

    ``traces[trace_id]`` and ``keys[key]`` number a node the first time it is named (one
    counter, two maps, so neither needs a prefix); ``edges`` holds the two nodes of each
    edge in turn. Numbering the names and joining integers afterwards is what makes this
    fast: a union-find over the names themselves cost three times as long. (scipy's
    ``connected_components`` is no faster on these graphs, and would add 30 MB to the
    collector, which resolves identity on every analysis pass.) The methods are plain typed
    code, which the compiled build turns into direct dict calls.
    """

    __slots__ = ("edges", "keys", "nodes", "traces")

    def __init__(self) -> None:
        self.nodes = 0
        self.traces: dict[str, int] = {}
        self.keys: dict[str, int] = {}
        self.edges: list[int] = []

    def trace(self, trace_id: str) -> int:
        return self._node(self.traces, trace_id)

    def key(self, key: str) -> int:
        return self._node(self.keys, key)

    def _node(self, numbered: dict[str, int], name: str) -> int:
        """``name``'s node in ``numbered``, given the next number the first time."""
        node = numbered.get(name)
        if node is None:
            node = numbered[name] = self.nodes
            self.nodes += 1
        return node

    def join(self, a: int, b: int) -> None:
        self.edges.append(a)
        self.edges.append(b)

    def components(self) -> list[int]:
        """The component of every node, by node number: the component's smallest node."""
        parent = list(range(self.nodes))
        ends = iter(self.edges)
        for a, b in zip(ends, ends, strict=True):
            # find both roots, halving the paths on the way
            while parent[a] != a:
                parent[a] = a = parent[parent[a]]
            while parent[b] != b:
                parent[b] = b = parent[parent[b]]
            if a < b:
                parent[b] = a
            elif b < a:
                parent[a] = b
        # a root is smaller than every node below it: in node order, each node's parent
        # already points at its root
        for node, up in enumerate(parent):
            parent[node] = parent[up]
        return parent


def _absorb(
    graph: _Graph,
    strong: dict[str, int],
    business_of: dict[int, set[str]],
    anchor: int,
    keys: _Keys,
) -> None:
    """Join ``anchor`` to each of a record's keys; note its strong keys and business key."""
    for prio, key in keys.strong:
        strong[key] = prio
        graph.join(anchor, graph.key(key))
    for key in keys.join:
        graph.join(anchor, graph.key(key))
    if keys.business:
        business_of.setdefault(anchor, set()).add(keys.business)


def resolve_identity(
    spans: Sequence[SpanRecord],
    logs: Sequence[LogRecord],
    events: Sequence[EventRecord],
    config: SagaConfig,
) -> Resolution:
    """Merge identity keys over all records and assign each saga its deterministic key."""
    return resolve_columns(
        [s.trace_id for s in spans],
        [s.attributes for s in spans],
        [s.messaging_conversation_id for s in spans],
        [s.links for s in spans],
        logs,
        events,
        config,
    )


def resolve_columns(
    trace_ids: Sequence[str],
    attributes: Sequence[dict[str, Any]],
    conversation_ids: Sequence[str],
    links: Sequence[list[dict[str, Any]]],
    logs: Sequence[LogRecord],
    events: Sequence[EventRecord],
    config: SagaConfig,
) -> Resolution:
    """:func:`resolve_identity`, from the only columns of the spans that bear on identity.

    A caller holding many spans may pass just those that carry identity or links: the
    other spans cannot put their trace in a saga, and a trace that only a link, log or
    event names gets its node from that.
    """
    graph = _Graph()
    strong: dict[str, int] = {}
    business_of: dict[int, set[str]] = {}
    trace_links: set[tuple[str, str]] = set()

    identity_attributes = config.identity_attributes
    for trace_id, attrs, conversation, span_links in zip(
        trace_ids, attributes, conversation_ids, links, strict=True
    ):
        node = graph.trace(trace_id)
        # most spans (database calls, HTTP clients) carry no identity: one C-level check
        if conversation or not identity_attributes.isdisjoint(attrs):
            keys = _span_column_keys(attrs, conversation, config)
            _absorb(graph, strong, business_of, node, keys)
        for link in span_links:
            linked = link.get("trace_id")
            if linked and linked != trace_id:
                graph.join(node, graph.trace(linked))
                trace_links.add((trace_id, linked))

    log_anchor: list[int] = []
    for log in logs:
        keys = log_keys(log, config)
        if log.trace_id:
            anchor = graph.trace(log.trace_id)
        elif keys.strong:
            anchor = graph.key(keys.strong[0][1])
        else:
            log_anchor.append(-1)
            continue
        _absorb(graph, strong, business_of, anchor, keys)
        log_anchor.append(anchor)

    event_anchor: list[int] = []
    for event in events:
        keys = event_keys(event, config)
        if event.trace_id:
            anchor = graph.trace(event.trace_id)
        elif keys.strong:
            anchor = graph.key(keys.strong[0][1])
        elif keys.join:
            anchor = graph.key(keys.join[0])
        else:
            event_anchor.append(-1)
            continue
        _absorb(graph, strong, business_of, anchor, keys)
        event_anchor.append(anchor)

    component = graph.components()
    key_nodes = graph.keys
    best: dict[int, tuple[int, str]] = {}
    for key, prio in strong.items():
        root = component[key_nodes[key]]
        cand = (prio, key)
        cur = best.get(root)
        if cur is None or cand < cur:
            best[root] = cand
    # the saga of every node, "" for none
    saga_of_component = {root: key for root, (_, key) in best.items()}
    saga = [saga_of_component.get(c, "") for c in component]
    saga.append("")  # index -1: a record with no anchor

    trace_saga = {t: k for t, node in graph.traces.items() if (k := saga[node])}
    identity = {key: k for key, node in key_nodes.items() if (k := saga[node])}
    business: dict[str, set[str]] = {}
    for anchor, values in business_of.items():
        if k := saga[anchor]:
            business.setdefault(k, set()).update(values)
    rule = {key: RULES[prio] for prio, key in best.values()}
    log_saga = [saga[a] for a in log_anchor]
    event_saga = [saga[a] for a in event_anchor]
    return Resolution(
        trace_saga=trace_saga,
        log_saga=log_saga,
        event_saga=event_saga,
        identity=identity,
        rule=rule,
        business=business,
        links=trace_links,
    )
