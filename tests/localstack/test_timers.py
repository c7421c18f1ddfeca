"""Schedules: rate and cron expressions, scaled timers, the scheduled-event envelope, on-demand runs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scripts.localstack.manifest import ScheduleSpec
from scripts.localstack.timers import CronExpression, RateExpression, Timers, UnsupportedExpression, parse_schedule
from scripts.localstack.workers import WorkerPool
from tests.localstack.fixtures.manifests import ACCOUNT_ID, REGION, function_spec, manifest

pytestmark = pytest.mark.timeout(30)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def next_fire(expression: str, after: str) -> datetime | None:
    parsed = parse_schedule(f"cron({expression})")
    assert isinstance(parsed, CronExpression)
    return parsed.next_after(at(after))


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 3 * * ? *", "2026-01-01T05:00:00", "2026-01-02T03:00:00"),  # daily at 03:00
        ("0 3 * * ? *", "2026-01-01T02:59:59", "2026-01-01T03:00:00"),
        ("0 3 * * ? *", "2026-01-01T03:00:00", "2026-01-02T03:00:00"),  # strictly after
        ("0/15 * * * ? *", "2026-01-01T10:07:00", "2026-01-01T10:15:00"),
        ("10-30/10 8 * * ? *", "2026-01-01T08:21:00", "2026-01-01T08:30:00"),
        ("0 9 ? * MON-FRI *", "2026-01-02T10:00:00", "2026-01-05T09:00:00"),  # Friday -> Monday
        ("0 12 ? * 1 *", "2026-01-01T00:00:00", "2026-01-04T12:00:00"),  # 1 = Sunday
        ("0 0 29 2 ? *", "2025-03-01T00:00:00", "2028-02-29T00:00:00"),  # leap day
        ("30 12 1 JAN,JUL ? 2030", "2026-06-01T00:00:00", "2030-01-01T12:30:00"),
        ("0 0 31 * ? *", "2026-04-01T00:00:00", "2026-05-31T00:00:00"),  # April has no 31st
        ("0 0 1 1 ? 2020", "2026-01-01T00:00:00", None),  # only in the past
    ],
)
def test_cron_next_fire_time(expression: str, after: str, expected: str | None) -> None:
    assert next_fire(expression, after) == (at(expected) if expected else None)


def test_rate_expressions() -> None:
    assert parse_schedule("rate(1 minute)") == RateExpression(60)
    assert parse_schedule("rate(5 minutes)") == RateExpression(300)
    assert parse_schedule("rate(2 hours)") == RateExpression(7200)
    assert parse_schedule("rate(1 day)") == RateExpression(86400)
    assert RateExpression(60).next_after(at("2026-01-01T00:00:30")) == at("2026-01-01T00:01:30")


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 minutes)",
        "rate(1 week)",
        "cron(0 3 * * * *)",  # day-of-month and day-of-week both given
        "cron(0 3 ? * ? *)",
        "cron(0 3 * *)",
        "cron(61 * * * ? *)",
        "every day",
    ],
)
def test_invalid_expressions_are_rejected(expression: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(expression)


@pytest.mark.parametrize(
    "expression", ["cron(0 3 L * ? *)", "cron(0 3 15W * ? *)", "cron(0 3 ? * 6#3 *)", "cron(0 3 ? * FRI-MON *)"]
)
def test_unsupported_expressions_are_reported_as_such(expression: str) -> None:
    with pytest.raises(UnsupportedExpression):
        parse_schedule(expression)


def schedule(name: str, expression: str, input_text: str | None = None, enabled: bool = True) -> ScheduleSpec:
    return {"name": name, "function": "OnEvent", "expression": expression, "input": input_text, "enabled": enabled}


def run_timers(
    schedules: list[ScheduleSpec], records: Path, seconds: float, scale: float, on_demand: str | None = None
) -> list[Any]:
    """Run the timers for a while (and optionally one schedule on demand); the events received."""
    the_manifest = manifest(
        [function_spec("OnEvent", "sqs", "app.on_event", environment={"RECORD_FILE": str(records)})],
        schedules=schedules,
    )

    async def main() -> None:
        pool = WorkerPool(the_manifest["functions"])
        timers = Timers(the_manifest, pool, scale=scale)
        try:
            await timers.start()
            if on_demand:
                assert (await timers.run_now(on_demand)).ok
            await asyncio.sleep(seconds)
        finally:
            await timers.stop()
            await pool.close()

    asyncio.run(main())
    return [json.loads(line)["rule_event"] for line in records.read_text().splitlines()] if records.exists() else []


def test_a_scaled_rate_fires_every_scaled_period_starting_after_one(tmp_path: Path) -> None:
    started = time.time()

    # rate(1 minute) at scale 0.01 fires every 0.6 s: at 0.6, 1.2 and 1.8 s within 2.1 s.
    events = run_timers([schedule("Tick", "rate(1 minute)")], tmp_path / "records.jsonl", 2.1, 0.01)

    assert len(events) == 3
    event = events[0]
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["resources"] == [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/Tick"]
    assert (event["account"], event["region"], event["detail"]) == (ACCOUNT_ID, REGION, {})
    assert started - 5 < datetime.fromisoformat(event["time"]).timestamp() < time.time() + 1


def test_constant_input_and_on_demand_runs(tmp_path: Path) -> None:
    disabled = schedule("Gc", "rate(1 minute)", input_text='{"task": "gc"}', enabled=False)

    events = run_timers([disabled], tmp_path / "records.jsonl", 0.8, 0.01, on_demand="Gc")

    assert events == [{"task": "gc"}]  # run once on demand; a disabled schedule never fires by itself


def test_an_unsupported_schedule_is_logged_and_does_not_fire(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    events = run_timers([schedule("Last", "cron(0 0 L * ? *)")], tmp_path / "records.jsonl", 0.2, 1.0)

    assert events == []
    assert any(
        "is not supported locally" in record.getMessage() and "/_local/schedules/Last/run" in record.getMessage()
        for record in caplog.records
    )
