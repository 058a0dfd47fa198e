import pytest

from collector.analysis.config import ConfigError, SagaConfig, parse_duration

DESIGN_EXAMPLE = {
    "stall_after": "5m",
    "correlation": [
        {"attribute": "order.id"},
        {"cloudevents": "orderid"},
        {"json": "data.orderId"},
    ],
    "sagas": {
        "OrderSaga": {
            "steps": [
                {
                    "name": "reserve_inventory",
                    "compensation": "release_inventory",
                    "timeout": "30s",
                },
                {"name": "charge_payment", "compensation": "refund_payment"},
                {"name": "ship_order"},
            ],
            "completes_on": ["ship_order"],
            "fails_on": ["PaymentDeclined", "InventoryFailed"],
        }
    },
}


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("250ms", 250_000_000),
        ("30s", 30_000_000_000),
        ("5m", 300_000_000_000),
        ("1h", 3_600_000_000_000),
        ("1h30m", 5_400_000_000_000),
        ("1.5s", 1_500_000_000),
        ("2d", 172_800_000_000_000),
        (" 10S ", 10_000_000_000),
        (45, 45_000_000_000),
    ],
)
def test_parse_duration(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration"),
        ("5", "unknown duration unit ''"),
        ("5 minutes", "unknown duration unit 'minutes'"),
        ("m5", "not a duration"),
        (-1, "must not be negative"),
        (True, "not a duration"),
    ],
)
def test_parse_duration_rejects(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_duration(text)


def test_default_config_is_usable():
    config = SagaConfig()
    assert config.stall_after_ns == 300_000_000_000
    assert config.sagas == {}
    assert config.correlation == ()
    assert config.stall_multiplier == 3.0


def test_design_example_parses():
    config = SagaConfig.from_dict(DESIGN_EXAMPLE)
    saga = config.sagas["OrderSaga"]
    assert [s.name for s in saga.steps] == ["reserve_inventory", "charge_payment", "ship_order"]
    assert saga.steps[0].timeout_ns == 30_000_000_000
    assert saga.steps[1].compensation == "refund_payment"
    assert saga.completes_on == ("ship_order",)
    assert saga.fails_on == ("PaymentDeclined", "InventoryFailed")
    # every rule labels its key like the first attribute rule, so they merge one saga
    assert [(r.source, r.path, r.key) for r in config.correlation] == [
        ("attribute", "order.id", "order.id"),
        ("cloudevents", "orderid", "order.id"),
        ("json", "data.orderId", "order.id"),
    ]
    assert config.compensation_of["release:inventory"] == "reserve_inventory"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1], "definitions file: expected a mapping, got list"),
        ({"stall_aftr": "5m"}, r"stall_aftr: unknown field"),
        ({"stall_after": "5 minutes"}, r"stall_after: unknown duration unit 'minutes'"),
        ({"stall_after": "0s"}, "stall_after: must be positive"),
        ({"stall_multiplier": "3"}, "stall_multiplier: expected a positive number"),
        ({"stall_min_samples": 0}, "stall_min_samples: expected a positive integer"),
        ({"correlation": {"attribute": "x"}}, "correlation: expected a list, got dict"),
        ({"correlation": ["order.id"]}, r"correlation\[0\]: expected a mapping"),
        ({"correlation": [{"header": "x"}]}, r"correlation\[0\].header: unknown field"),
        ({"correlation": [{}]}, r"correlation\[0\]: needs exactly one of"),
        (
            {"correlation": [{"attribute": "a", "json": "data.a"}]},
            r"correlation\[0\]: needs exactly one of",
        ),
        ({"correlation": [{"attribute": ""}]}, r"correlation\[0\].attribute: expected a non-empty"),
        ({"correlation": [{"json": "orderId"}]}, r"correlation\[0\].json: path must start with"),
        ({"sagas": ["OrderSaga"]}, "sagas: expected a mapping"),
        ({"sagas": {"S": {"step": []}}}, r"sagas.S.step: unknown field"),
        ({"sagas": {"S": {"steps": "a"}}}, r"sagas.S.steps: expected a list, got str"),
        ({"sagas": {"S": {"steps": [{"compensation": "b"}]}}}, r"sagas.S.steps\[0\].name: missing"),
        ({"sagas": {"S": {"steps": [{"name": 3}]}}}, r"sagas.S.steps\[0\].name: expected a non"),
        (
            {"sagas": {"S": {"steps": [{"name": "a", "timeout": "soon"}]}}},
            r"sagas.S.steps\[0\].timeout: not a duration",
        ),
        (
            {"sagas": {"S": {"steps": [{"name": "a"}, {"name": "a"}]}}},
            r"sagas.S.steps\[1\].name: step 'a' declared twice",
        ),
        ({"sagas": {"S": {"completes_on": [""]}}}, r"sagas.S.completes_on\[0\]: expected"),
        ({"sagas": {"S": {"fails_on": {"a": 1}}}}, r"sagas.S.fails_on: expected a list"),
        ({"sagas": {"S": {"steps": [{"name": "a", "tmeout": "1s"}]}}}, r"steps\[0\].tmeout"),
    ],
)
def test_bad_config_names_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        SagaConfig.from_dict(data)


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        {"sagas": {"S": None}},
        {"sagas": {"S": {"steps": ["a", "b"]}}},
        {"sagas": {"S": {"completes_on": "done"}}},
        {"correlation": [{"attribute": "order.id", "key": "order"}]},
        {"stall_multiplier": 2.5, "stall_min_samples": 5},
    ],
)
def test_good_configs(data):
    assert isinstance(SagaConfig.from_dict(data), SagaConfig)


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_one_config_file_holds_definitions_taps_and_redaction(tmp_path):
    import click

    from collector.cli import _load_config

    path = tmp_path / "sagalens.yaml"
    path.write_text(
        "stall_after: 1m\n"
        "taps: [{kind: nats, url: 'nats://127.0.0.1:4222', subjects: [a.>]}]\n"
        "redaction: {attributes: [card.number]}\n"
    )
    assert _load_config(str(path))["redaction"] == {"attributes": ["card.number"]}
    path.write_text("redaction: {attributes: card.number}\n")
    with pytest.raises(click.ClickException, match=r"redaction\.attributes must be a list"):
        _load_config(str(path))
    path.write_text("redaction: [card.number]\n")
    with pytest.raises(click.ClickException, match="redaction: expected a mapping"):
        _load_config(str(path))
