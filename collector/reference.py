"""The README's configuration reference, generated from the code.

Every ``sagalens`` command's options (read from the click commands) and every key the
config file loaders accept (read from ``collector.analysis.config`` and
``collector.receivers.taps``) are rendered as Markdown. Descriptions the code does not carry
(options without ``help=``, config keys) live in the tables below; a key or option without a
description renders as ``(undocumented)``, which tests/test_readme.py refuses.

``python -m collector.reference`` prints the block; ``--write README.md`` replaces the block
between the markers in the README; ``--check README.md`` exits 1 when the README has drifted.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

BEGIN = "<!-- BEGIN GENERATED: python -m collector.reference --write README.md -->"
END = "<!-- END GENERATED -->"
UNDOCUMENTED = "(undocumented)"
_PROBE = "__sagalens_probe__"

# Options whose click declaration has no help text.
OPTION_NOTES: dict[str, str] = {
    "--host": "Interface the collector listens on (OTLP/HTTP, API and OTLP/gRPC).",
    "--http-port": "OTLP/HTTP, CloudEvents, query API, /healthz and /metrics.",
    "--grpc-port": "OTLP/gRPC.",
    "--port": "Dashboard port (the dashboard listens on 127.0.0.1).",
    "--limit": "Largest number of sagas listed.",
    "--out": "Report file to write; the manifest goes to `OUT.manifest.json`.",
    "--version": "Print the version and exit.",
}

# Said once under a command's table.
COMMAND_NOTES: dict[str, str] = {
    "collector": "`--tap` from the environment: several URLs in `SAGALENS_TAP` are separated "
    "by spaces. Taps from `--config` and `--tap` are combined.",
    "dashboard": "Without `--collector` and `--db` it reads the collector at "
    "`http://127.0.0.1:4318`.",
    "up": "Starts `sagalens collector` with these options, waits until it is healthy, then "
    "the dashboard reading through it. Taps come from `--config`.",
    "demo": "Like `up`, plus live traffic from both sample systems; without `--config` it "
    "loads the sample systems' definitions.",
    "sagas": "Without `--collector` and `--db` it opens `sagalens.duckdb` read-only. It prints "
    "one line a saga, newest first, under a header: key, status, type, start (UTC), open "
    "findings and why it has its status; `--json` prints the query API's answer.",
    "report": "Without `--collector` and `--db` it opens `sagalens.duckdb` read-only. "
    "`--format audit-log` refuses `--from`, `--to`, `--saga`, `--status` and `--type`.",
    "verify": "Exit status 0 when nothing is wrong, 1 when a problem was found or there is "
    "no readable manifest.",
    "import": "With neither `--collector` nor `--db` it writes `sagalens.duckdb`; "
    "`--db` and `--collector` together are refused.",
}


@dataclass(frozen=True)
class OptionDoc:
    """One option of one command, as the reference shows it."""

    command: str
    flags: tuple[str, ...]  # e.g. ("--analysis", "--no-analysis")
    envvar: str
    default: str
    description: str


@dataclass(frozen=True)
class KeyDoc:
    """One config-file key of one section, as the reference shows it."""

    section: str
    key: str
    default: str
    description: str


# -- CLI ---------------------------------------------------------------------------------


def _cli() -> click.Group:
    from collector.cli import main

    return main


def _default(param: click.Option) -> str:
    if param.required:
        return "required"
    value = param.default
    if param.is_flag and not param.secondary_opts:
        return "off"
    if isinstance(value, bool):
        return "on" if value else "off"
    if param.multiple or value is None or value == "" or not isinstance(value, str | int | float):
        return "—"
    return f"`{value}`"


def _description(param: click.Option) -> str:
    text = " ".join((param.help or OPTION_NOTES.get(param.opts[0], "")).split())
    if isinstance(param.type, click.Choice):
        text = (
            (text + " " if text else "")
            + "One of "
            + ", ".join(f"`{c}`" for c in param.type.choices)
        )
        text += "."
    return text or UNDOCUMENTED


def _envvar(param: click.Option) -> str:
    envvar = param.envvar
    if not envvar:
        return ""
    if isinstance(envvar, str):
        return envvar
    return ", ".join(envvar)


def command_options(group: click.Group | None = None) -> Iterator[OptionDoc]:
    """Every option of the group itself (command ``""``) and of each of its commands."""
    group = group or _cli()
    sources: list[tuple[str, click.Command]] = [("", group)]
    sources += sorted(group.commands.items())
    for name, command in sources:
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            yield OptionDoc(
                command=name,
                flags=(*param.opts, *param.secondary_opts),
                envvar=_envvar(param),
                default=_default(param),
                description=_description(param),
            )


def _title(name: str) -> str:
    return f"sagalens {name}" if name else "sagalens"


def _usage(name: str, command: click.Command) -> str:
    if not name:
        return "sagalens [OPTIONS] COMMAND ..."
    parts = [_title(name)]
    for param in command.params:
        if isinstance(param, click.Argument):
            meta = (param.name or "arg").upper()
            parts.append(f"{meta}..." if param.nargs == -1 else meta)
    parts.append("[OPTIONS]")
    return " ".join(parts)


# -- config file -------------------------------------------------------------------------


def _allowed_from_error(load: Callable[[], object]) -> tuple[str, ...]:
    """The keys a loader accepts, read from the error it raises for an unknown key."""
    try:
        load()
    except ValueError as exc:
        match = re.search(r"(?:expected one of|allowed:) ([\w, ]+)", str(exc))
        if match:
            return tuple(k.strip() for k in match.group(1).split(",") if k.strip())
        raise RuntimeError(f"cannot read the accepted keys from: {exc}") from exc
    raise RuntimeError("the loader accepted an unknown key")


def definitions_keys() -> dict[str, tuple[str, ...]]:
    """Keys of the saga definitions part, per section, as ``SagaConfig.from_dict`` accepts."""
    from collector.analysis.config import SagaConfig

    def probe(d: Mapping[str, Any]) -> Callable[[], object]:
        return lambda: SagaConfig.from_dict(d)

    return {
        "top": _allowed_from_error(probe({_PROBE: 1})),
        "correlation": _allowed_from_error(probe({"correlation": [{_PROBE: 1}]})),
        "saga": _allowed_from_error(probe({"sagas": {"S": {_PROBE: 1}}})),
        "step": _allowed_from_error(probe({"sagas": {"S": {"steps": [{_PROBE: 1}]}}})),
    }


def tap_keys() -> dict[str, tuple[str, ...]]:
    """Keys of a ``taps:`` entry, per kind, as ``parse_tap`` accepts."""
    from collector.receivers.taps import KINDS, parse_tap

    def probe(kind: str) -> Callable[[], object]:
        return lambda: parse_tap({"kind": kind, _PROBE: 1})

    return {kind: _allowed_from_error(probe(kind)) for kind in KINDS}


# The `redaction:` section is read by dashboard.report.redaction.RedactionRules.from_dict.
REDACTION_KEYS = ("attributes", "patterns", "defaults")


def _duration(ns: int) -> str:
    for unit, size in (("h", 3600 * 10**9), ("m", 60 * 10**9), ("s", 10**9), ("ms", 10**6)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def _key_texts() -> dict[tuple[str, str], tuple[str, str]]:
    """(section, key) -> (default, description). Defaults come from the code where it has them."""
    from collector.analysis.config import SagaConfig
    from collector.receivers.taps import (
        DEFAULT_BATCH_MS,
        DEFAULT_BATCH_SIZE,
        DEFAULT_MAX_MESSAGE_BYTES,
        TapConfig,
    )

    base = SagaConfig()
    tap = TapConfig(kind="", name="")
    return {
        ("top", "stall_after"): (
            f"`{_duration(base.stall_after_ns)}`",
            "A saga with no progress for this long is `stalled`, unless a step `timeout` or "
            "a learned threshold applies. Durations: `250ms`, `30s`, `5m`, `1h30m` "
            "(units ns, us, ms, s, m, h, d) or plain seconds.",
        ),
        ("top", "stall_multiplier"): (
            f"`{base.stall_multiplier:g}`",
            "A learned threshold is this many times the p99 duration of the same step "
            "transition in earlier sagas.",
        ),
        ("top", "stall_min_samples"): (
            f"`{base.stall_min_samples}`",
            "Earlier samples of a transition needed before its learned threshold replaces "
            "`stall_after`.",
        ),
        ("top", "correlation"): (
            "—",
            "Where a business key may be found, first match wins (see below).",
        ),
        ("top", "sagas"): ("—", "Saga type name → definition (see below)."),
        ("top", "taps"): ("—", "Broker taps (see below). Read by `sagalens collector`."),
        ("top", "redaction"): (
            "built-in rules",
            "What audit reports mask (see below). Read by `sagalens report --config`.",
        ),
        ("correlation", "attribute"): ("—", "A span or log-record attribute, e.g. `order.id`."),
        ("correlation", "cloudevents"): ("—", "A CloudEvents extension attribute, e.g. `orderid`."),
        ("correlation", "json"): (
            "—",
            "A path into an event's JSON payload; starts with `data`, e.g. `data.orderId`.",
        ),
        ("correlation", "key"): (
            "one shared label",
            "Label of the business key. Values found by rules with the same label are the "
            "same key; without `key` every rule shares one label (the first `attribute` "
            "rule's path), so an attribute and a payload field can join one saga.",
        ),
        ("saga", "steps"): (
            "—",
            "The steps in order: span names, activity types or event types. "
            "An entry is a name or a mapping (see below).",
        ),
        ("saga", "completes_on"): ("—", "Steps or event types after which the saga is complete."),
        ("saga", "fails_on"): ("—", "Steps or event types that mean the saga failed."),
        ("step", "name"): (
            "required",
            "Step name (matched regardless of spelling style; steps are shown as spelled here).",
        ),
        ("step", "compensation"): ("—", "The step that undoes this one."),
        ("step", "timeout"): (
            "—",
            "The saga is stalled when this step runs longer than this (a duration); "
            "wins over learned thresholds and `stall_after`.",
        ),
        ("redaction", "attributes"): (
            "—",
            "Attribute names whose values are always masked.",
        ),
        ("redaction", "patterns"): (
            "—",
            "Name → regular expression, masked wherever it matches in a text.",
        ),
        ("redaction", "defaults"): (
            "`false`",
            "`true` adds the built-in rules (card numbers, e-mail addresses, card/e-mail/"
            "password attributes) to these. Without a `redaction:` section the built-in "
            "rules apply; `--no-redaction` turns all masking off.",
        ),
        ("tap", "kind"): ("required", "`rabbitmq` (or `amqp`, `amqps`), `nats` or `kafka`."),
        ("tap", "name"): (
            "`<kind>:<exchange, subjects or topics>`",
            "Name in the collector's log; unique per tap.",
        ),
        ("tap", "type_from"): (
            "routing key / subject / topic",
            "Where a plain JSON message's event type comes from: `routing_key`, `subject`, "
            "`topic`, or a JSON path such as `data.eventType`. CloudEvents carry their type.",
        ),
        ("tap", "batch_size"): (
            f"`{DEFAULT_BATCH_SIZE}`",
            "Messages committed (and then acknowledged) together.",
        ),
        ("tap", "batch_ms"): (f"`{DEFAULT_BATCH_MS}`", "Longest wait to fill a batch, ms."),
        ("tap", "max_message_bytes"): (
            f"`{DEFAULT_MAX_MESSAGE_BYTES}`",
            "Larger messages are recorded as rejections and acknowledged.",
        ),
        ("rabbitmq", "url"): ("`amqp://guest:guest@127.0.0.1:5672/`", "`amqp://` or `amqps://`."),
        ("rabbitmq", "exchange"): ("required", "Exchange to copy messages from."),
        ("rabbitmq", "bindings"): (
            f"`{list(tap.bindings)}`",
            "Binding keys of the tap's queue.",
        ),
        ("rabbitmq", "binding"): ("—", "One binding key (same as a one-item `bindings`)."),
        ("rabbitmq", "queue"): ("`sagalens.tap.<exchange>`", "The tap's own queue."),
        ("rabbitmq", "durable"): (
            "`true`",
            "`false`: an auto-delete queue; nothing is kept while the collector is down.",
        ),
        ("nats", "url"): ("`nats://127.0.0.1:4222`", "`nats://` or `tls://`."),
        ("nats", "subjects"): ("required", "Subjects to read, wildcards allowed."),
        ("nats", "subject"): ("—", "One subject (same as a one-item `subjects`)."),
        ("nats", "stream"): ("the stream covering the subject", "JetStream stream."),
        ("nats", "create_stream"): ("`false`", "`true` creates `stream` (which must be named)."),
        ("nats", "durable"): (
            f"`{tap.durable_name}`",
            "Durable consumer name; with several subjects `<durable>_0`, `<durable>_1`, ...",
        ),
        ("nats", "ack_wait"): (f"`{tap.ack_wait_s:g}`", "Seconds before JetStream redelivers."),
        ("kafka", "bootstrap"): ("required", "`host:port[,host:port]`."),
        ("kafka", "topics"): ("required", "Topics to read."),
        ("kafka", "topic"): ("—", "One topic (same as a one-item `topics`)."),
        ("kafka", "group"): (f"`{tap.group}`", "The tap's own consumer group."),
    }


SECTION_TITLES = {
    "top": "Top level",
    "correlation": "`correlation:` entries (exactly one of `attribute`, `cloudevents`, `json`)",
    "saga": "`sagas.<SagaType>:`",
    "step": "`sagas.<SagaType>.steps:` entries (a plain name is `{name: ...}`)",
    "redaction": "`redaction:`",
    "tap": "`taps:` entries, every kind",
    "rabbitmq": "`taps:` entries, `kind: rabbitmq`",
    "nats": "`taps:` entries, `kind: nats`",
    "kafka": "`taps:` entries, `kind: kafka`",
}


def config_keys() -> dict[str, tuple[str, ...]]:
    """Every section of the config file and the keys its loader accepts, from the code."""
    defs = definitions_keys()
    taps = tap_keys()
    common = set.intersection(*(set(keys) for keys in taps.values()))
    sections: dict[str, tuple[str, ...]] = {
        "top": tuple(dict.fromkeys((*defs["top"], "taps", "redaction"))),
        "correlation": defs["correlation"],
        "saga": defs["saga"],
        "step": defs["step"],
        "redaction": REDACTION_KEYS,
        "tap": tuple(k for k in taps[next(iter(taps))] if k in common),
    }
    for kind, keys in taps.items():
        sections[kind] = tuple(k for k in keys if k not in common)
    return sections


def config_docs() -> Iterator[KeyDoc]:
    texts = _key_texts()
    for section, keys in config_keys().items():
        for key in keys:
            default, description = texts.get((section, key), ("—", UNDOCUMENTED))
            yield KeyDoc(section, key, default, description)


def _key_order(section: str, keys: tuple[str, ...]) -> list[str]:
    """Keys in the order of the description table (new ones last, alphabetically)."""
    known = [k for (s, k) in _key_texts() if s == section]
    return [k for k in known if k in keys] + sorted(k for k in keys if k not in known)


# -- rendering -----------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """The Markdown of the configuration reference, markers included."""
    group = _cli()
    out = [BEGIN, "", "### Command-line options", ""]
    out.append(
        "An explicit flag wins over its environment variable, which wins over the default; "
        "options without one are set on the command line only. `-h`/`--help` works everywhere."
    )
    by_command: dict[str, list[OptionDoc]] = {}
    for doc in command_options(group):
        by_command.setdefault(doc.command, []).append(doc)
    commands: list[tuple[str, click.Command]] = [("", group), *sorted(group.commands.items())]
    for name, command in commands:
        out += ["", f"#### `{_title(name)}`", ""]
        summary = (command.help or "").strip().splitlines()[0] if command.help else ""
        out += [f"`{_usage(name, command)}` — {summary}", ""]
        out += [
            "| option | environment variable | default | meaning |",
            "| --- | --- | --- | --- |",
        ]
        for doc in by_command.get(name, []):
            flags = " / ".join(f"`{f}`" for f in doc.flags)
            env = f"`{doc.envvar}`" if doc.envvar else "—"
            out.append(f"| {flags} | {env} | {_cell(doc.default)} | {_cell(doc.description)} |")
        if name in COMMAND_NOTES:
            out += ["", COMMAND_NOTES[name]]
    out += ["", "### Config file keys", ""]
    out.append(
        "One YAML file (`--config`) holds the saga definitions, the taps and the redaction "
        "rules; every section is optional. An unknown key in the definitions or a tap stops "
        "the command with the key's path."
    )
    docs: dict[str, dict[str, KeyDoc]] = {}
    for kdoc in config_docs():
        docs.setdefault(kdoc.section, {})[kdoc.key] = kdoc
    for section, keys in config_keys().items():
        out += ["", f"#### {SECTION_TITLES.get(section, section)}", ""]
        out += ["| key | default | meaning |", "| --- | --- | --- |"]
        for key in _key_order(section, keys):
            kdoc = docs[section][key]
            out.append(f"| `{key}` | {_cell(kdoc.default)} | {_cell(kdoc.description)} |")
    out += ["", END]
    return "\n".join(out)


def replace_block(text: str, block: str) -> str:
    """``text`` with the generated block (between the markers) replaced by ``block``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError("the README has no generated reference block (markers missing)")
    return text[:start] + block + text[end + len(END) :]


def current_block(text: str) -> str:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError("the README has no generated reference block (markers missing)")
    return text[start : end + len(END)]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] in ("--write", "--check"):
        path = Path(args[1])
        text = path.read_text(encoding="utf-8")
        block = render()
        if args[0] == "--write":
            path.write_text(replace_block(text, block), encoding="utf-8")
            return 0
        if current_block(text) != block:
            print(
                f"{path}: the configuration reference is out of date; "
                f"run python -m collector.reference --write {path}",
                file=sys.stderr,
            )
            return 1
        return 0
    if args:
        print("usage: python -m collector.reference [--write README.md | --check README.md]")
        return 2
    print(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
