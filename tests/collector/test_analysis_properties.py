"""Order and batching never change the analysis; a saga alone analyses as it does in a crowd."""

from dataclasses import asdict, fields, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.analysis.config import SagaConfig
from collector.analysis.core import ANALYSED_SPAN_FIELDS, analyze, analyze_sagas, gather_records
from collector.analysis.identity import _Graph, identity_keys, resolve_identity
from collector.analysis.model import AnalysisResult
from collector.normalize.records import SpanRecord
from sample_data.shapes import SCENARIOS, SHAPES, build_population, combined_config

CONFIG = SagaConfig.from_dict(combined_config())
POP = build_population(
    36, seed=7, scenario_weights={s: 1.0 for s in SCENARIOS}, spacing_ns=2_000_000_000
)
BASELINE = analyze(POP.spans, POP.logs, POP.events, CONFIG, POP.now_ns)


def canon(result: AnalysisResult) -> dict[str, object]:
    return {
        "sagas": sorted((asdict(s) for s in result.sagas), key=lambda d: d["saga_key"]),
        "steps": sorted((asdict(s) for s in result.steps), key=lambda d: (d["saga_key"], d["seq"])),
        "findings": sorted((asdict(f) for f in result.findings), key=lambda d: d["finding_id"]),
        "membership": dict(sorted(result.membership.items())),
        "trace_saga": dict(sorted(result.trace_saga.items())),
        "event_saga": dict(sorted(result.event_saga.items())),
        "identity": dict(sorted(result.identity.items())),
    }


def test_population_covers_every_shape_and_many_statuses():
    assert len(BASELINE.sagas) == 36
    assert {s.status for s in BASELINE.sagas} >= {
        "completed",
        "compensated",
        "compensation_missing",
        "compensation_failed",
        "stalled",
        "failed",
    }
    # saga.id serves two shapes; with the combined config business keys win over correlationid
    assert len({s.identity_rule for s in BASELINE.sagas}) == len(SHAPES) - 2


def test_sagas_by_trace_and_by_event_agree_with_membership():
    spans = {r.partition(":")[2].partition(":")[0] for r in BASELINE.membership if r[:5] == "span:"}
    events = {r[6:] for r in BASELINE.membership if r[:6] == "event:"}
    assert set(BASELINE.trace_saga) == spans and set(BASELINE.event_saga) == events
    for span in POP.spans:
        if span.ref in BASELINE.membership:
            assert BASELINE.trace_saga[span.trace_id] == BASELINE.membership[span.ref]
    for event in POP.events:
        if event.ref in BASELINE.membership:
            assert BASELINE.event_saga[event.event_key] == BASELINE.membership[event.ref]


def test_each_sagas_steps_come_together_in_order():
    # result_tables reads a step's successor from the next row
    order = [(s.saga_key, s.seq) for s in BASELINE.steps]
    assert order == sorted(
        order, key=lambda k: ([s.saga_key for s in BASELINE.sagas].index(k[0]), k[1])
    )
    assert len(set(order)) == len(order)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_shuffled_arrival_gives_the_same_result(rng):
    spans, logs, events = list(POP.spans), list(POP.logs), list(POP.events)
    rng.shuffle(spans)
    rng.shuffle(logs)
    rng.shuffle(events)
    assert canon(analyze(spans, logs, events, CONFIG, POP.now_ns)) == canon(BASELINE)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.integers(min_value=1, max_value=8))
def test_batches_unioned_give_the_same_result(rng, n_batches):
    batches: list[tuple[list, list, list]] = [([], [], []) for _ in range(n_batches)]
    for i, group in enumerate((POP.spans, POP.logs, POP.events)):
        for record in group:
            batches[rng.randrange(n_batches)][i].append(record)
    spans = [r for b in batches for r in b[0]]
    logs = [r for b in batches for r in b[1]]
    events = [r for b in batches for r in b[2]]
    assert canon(analyze(spans, logs, events, CONFIG, POP.now_ns)) == canon(BASELINE)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(st.integers(min_value=0, max_value=35), min_size=1, max_size=6))
def test_a_subset_holding_whole_sagas_analyses_them_identically(chosen):
    keys = sorted(BASELINE.sagas[i].saga_key for i in chosen)
    wanted = set(keys)
    member = BASELINE.membership
    spans = [r for r in POP.spans if member.get(r.ref) in wanted]
    logs = [r for r in POP.logs if member.get(r.ref) in wanted]
    events = [r for r in POP.events if member.get(r.ref) in wanted]
    sub = canon(analyze(spans, logs, events, CONFIG, POP.now_ns))
    full = canon(BASELINE)
    assert [s["saga_key"] for s in sub["sagas"]] == keys
    assert sub["sagas"] == [s for s in full["sagas"] if s["saga_key"] in wanted]
    assert sub["steps"] == [s for s in full["steps"] if s["saga_key"] in wanted]
    assert sub["findings"] == [f for f in full["findings"] if f["saga_key"] in wanted]
    assert sub["membership"] == {k: v for k, v in full["membership"].items() if v in wanted}
    assert sub["identity"] == {k: v for k, v in full["identity"].items() if v in wanted}


def test_analysing_gathered_records_reads_only_the_analysed_span_fields():
    # A rebuild resolves identity first, then builds span records from these fields alone.
    # Failed spans say why in their status, or fail by an exception event alone.
    error = {"name": "exception", "attributes": {"exception.type": "Declined"}}
    full = [
        (
            replace(s, status_message=f"failed: {s.name}")
            if i % 2
            else replace(s, status_code=0, status_message="", events=[error])
        )
        if s.status_code == 2
        else s
        for i, s in enumerate(POP.spans)
    ]
    blank = SpanRecord(trace_id="", span_id="", name="", start_ns=0, end_ns=0)
    stripped = [replace(blank, **{f: getattr(s, f) for f in ANALYSED_SPAN_FIELDS}) for s in full]
    unread = {f.name for f in fields(SpanRecord)} - set(ANALYSED_SPAN_FIELDS)
    differ = {f for s in full for f in unread if getattr(s, f) != getattr(blank, f)}
    assert {"links", "resource_attributes"} <= differ
    resolution = resolve_identity(full, POP.logs, POP.events, CONFIG)
    results = []
    for spans in (full, stripped):
        grouped = gather_records(
            resolution, spans, POP.logs, resolution.log_saga, POP.events, resolution.event_saga
        )
        results.append(analyze_sagas(grouped, grouped.saga_keys, CONFIG, POP.now_ns))
    assert results[0] == results[1]
    assert len(results[0][0]) == len(BASELINE.sagas)


def test_identity_keys_find_the_saga_of_later_records():
    """What the collector relies on: a new record's own keys lead to its earlier saga."""
    for record in [*POP.spans, *POP.events]:
        saga = BASELINE.membership.get(record.ref)
        keys = identity_keys(record, CONFIG)
        for key in keys:
            if saga is not None and key in BASELINE.identity:
                assert BASELINE.identity[key] == saga


def test_records_without_identity_are_not_sagas():
    from collector.normalize.records import SpanRecord

    stray = SpanRecord(
        trace_id="f" * 32,
        span_id="e" * 16,
        name="GET /health",
        start_ns=1,
        end_ns=2,
        kind=2,
        service_name="api",
    )
    result = analyze([*POP.spans, stray], POP.logs, POP.events, CONFIG, POP.now_ns)
    assert stray.ref not in result.membership
    assert canon(result)["sagas"] == canon(BASELINE)["sagas"]


@settings(max_examples=200, deadline=None)
@given(
    nodes=st.integers(min_value=1, max_value=40),
    pairs=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39)), max_size=60),
)
def test_identity_components_are_the_connected_components(
    nodes: int, pairs: list[tuple[int, int]]
) -> None:
    graph = _Graph()
    for name in range(nodes):
        assert graph.key(f"k{name}") == name  # numbered as first named
    for a, b in pairs:
        graph.join(a % nodes, b % nodes)
    component = graph.components()
    # reachability by repeated relaxation, the slow and obvious way
    reach = {n: {n} for n in range(nodes)}
    changed = True
    while changed:
        changed = False
        for a, b in pairs:
            a, b = a % nodes, b % nodes
            joined = reach[a] | reach[b]
            if joined != reach[a] or joined != reach[b]:
                reach[a] = reach[b] = joined
                changed = True
    for n in range(nodes):
        for m in range(nodes):
            assert (component[n] == component[m]) == (m in reach[n]), (n, m)
