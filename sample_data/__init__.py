"""Runnable sample systems (orchestrated and choreographed) and recorded data files."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_CONFIG: Path = HERE / "demo.yaml"
RECORDED_TRACES: Path = HERE / "recorded" / "orders.otlp.jsonl"
RECORDED_EVENTS: Path = HERE / "recorded" / "events.jsonl"

__all__ = ["DEMO_CONFIG", "RECORDED_EVENTS", "RECORDED_TRACES"]
