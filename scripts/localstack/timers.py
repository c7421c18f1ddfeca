"""Schedules: EventBridge ``rate(...)`` and ``cron(...)`` rules that moto stores but never fires.

Each enabled ``ScheduleSpec`` gets a timer that invokes its function asynchronously (as EventBridge
does, with Lambda's retries) at the times the expression gives, with the target's constant input
or the scheduled-event envelope.  ``LOCAL_SCHEDULE_SCALE`` multiplies the waits (0.001 turns a day
into 86 s) by running each timer on a virtual clock anchored at start-up, so cron times keep their
order and spacing instead of collapsing.  Any schedule can also be run on demand through the
gateway (``POST /_local/schedules/{name}/run``).

The cron subset: numbers, names (JAN-DEC, SUN-SAT), ``*``, ``?``, lists, ranges and steps in the
six AWS fields (minutes hours day-of-month month day-of-week year).  ``L``, ``W`` and ``#`` are
not emulated: such a schedule is reported in the log and runs only on demand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from scripts.localstack.manifest import Manifest, ScheduleSpec
from scripts.localstack.workers import InvocationResult, WorkerPool

log = logging.getLogger("localstack.timers")

_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
_CRON = re.compile(r"cron\((.*)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1
    )
}
_WEEKDAYS = {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}
_LAST_YEAR = 2199  # EventBridge's cron years run 1970-2199


class UnsupportedExpression(ValueError):
    """A valid AWS schedule expression that the local timers do not emulate."""


@dataclass(frozen=True)
class RateExpression:
    seconds: int

    def next_after(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: dict[str, int]

    def parse(self, text: str) -> tuple[int, ...]:
        values: set[int] = set()
        for part in text.split(","):
            base, _, step_text = part.partition("/")
            if base == "*":
                first, last = self.low, self.high
            elif "-" in base:
                first_text, _, last_text = base.partition("-")
                first, last = self._value(first_text), self._value(last_text)
            else:
                first = self._value(base)
                last = self.high if step_text else first  # "5/15" means from 5 on, every 15
            step = self._number(step_text) if step_text else 1
            if first > last or step < 1:
                raise UnsupportedExpression(f"{self.name} {part!r}: wrap-around ranges are not emulated")
            values.update(range(first, last + 1, step))
        return tuple(sorted(values))

    def _value(self, text: str) -> int:
        if text.upper() in self.names:
            return self.names[text.upper()]
        value = self._number(text)
        if not self.low <= value <= self.high:
            raise ValueError(f"{self.name} {value} is outside {self.low}-{self.high}")
        return value

    def _number(self, text: str) -> int:
        if not text.isdigit():
            if any(mark in text.upper() for mark in ("L", "W", "#")):
                raise UnsupportedExpression(f"{self.name} {text!r}: L, W and # are not emulated")
            raise ValueError(f"{self.name} {text!r} is not a number")
        return int(text)


_FIELDS = (
    _CronField("minutes", 0, 59, {}),
    _CronField("hours", 0, 23, {}),
    _CronField("day-of-month", 1, 31, {}),
    _CronField("month", 1, 12, _MONTHS),
    _CronField("day-of-week", 1, 7, _WEEKDAYS),
    _CronField("year", 1970, _LAST_YEAR, {}),
)


@dataclass(frozen=True)
class CronExpression:
    """An AWS cron expression; all times are UTC, as EventBridge's are."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...] | None  # None when the field is "?"
    months: tuple[int, ...]
    days_of_week: tuple[int, ...] | None  # 1 = Sunday ... 7 = Saturday; None when "?"
    years: tuple[int, ...]

    @classmethod
    def parse(cls, fields_text: str) -> CronExpression:
        fields = fields_text.split()
        if len(fields) != 6:
            raise ValueError(f"cron needs 6 fields (minutes hours day-of-month month day-of-week year), got {fields}")
        day_of_month, day_of_week = fields[2], fields[4]
        if (day_of_month == "?") == (day_of_week == "?"):
            raise ValueError("exactly one of day-of-month and day-of-week must be '?'")
        parsed = [None if text == "?" else spec.parse(text) for spec, text in zip(_FIELDS, fields, strict=True)]
        minutes, hours, months, years = parsed[0], parsed[1], parsed[3], parsed[5]
        assert minutes is not None and hours is not None and months is not None and years is not None
        return cls(minutes, hours, parsed[2], months, parsed[4], years)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after ``moment`` (whole minutes), or None if there is none."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.date()
        while day.year <= _LAST_YEAR:
            if day.year not in self.years:
                later = [year for year in self.years if year > day.year]
                if not later:
                    return None
                day = date(later[0], 1, 1)
                continue
            if day.month not in self.months:
                day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
                continue
            if self._day_matches(day):
                earliest = (start.hour, start.minute) if day == start.date() else (0, 0)
                for hour in self.hours:
                    for minute in self.minutes:
                        if (hour, minute) >= earliest:
                            return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
            day += timedelta(days=1)
        return None

    def _day_matches(self, day: date) -> bool:
        if self.days_of_month is not None:
            return day.day in self.days_of_month
        assert self.days_of_week is not None
        return day.isoweekday() % 7 + 1 in self.days_of_week  # ISO Monday=1 -> AWS Monday=2


def parse_schedule(expression: str) -> RateExpression | CronExpression:
    """Parse ``rate(...)`` or ``cron(...)``; ValueError if invalid, UnsupportedExpression if not emulated."""
    text = expression.strip()
    if rate := _RATE.fullmatch(text):
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1 or (value == 1) == unit.endswith("s"):  # AWS: "1 minute" but "5 minutes"
            raise ValueError(f"{expression!r}: use a singular unit for 1 and a plural one otherwise")
        return RateExpression(value * _UNIT_SECONDS[unit.rstrip("s")])
    if cron := _CRON.fullmatch(text):
        return CronExpression.parse(cron.group(1))
    raise ValueError(f"{expression!r} is neither rate(...) nor cron(...)")


def scheduled_event(rule_arn: str, region: str, account_id: str) -> dict[str, Any]:
    """The event EventBridge sends when a schedule without constant input fires."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class Timers:
    """A timer per enabled schedule, plus on-demand runs of any schedule."""

    def __init__(self, manifest: Manifest, pool: WorkerPool, *, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError(f"the schedule scale must be positive, got {scale}")
        self._manifest = manifest
        self._pool = pool
        self._scale = scale
        self._schedules = {schedule["name"]: schedule for schedule in manifest["schedules"]}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        for schedule in self._schedules.values():
            label = f"schedule {schedule['name']} ({schedule['expression']} -> {schedule['function']})"
            if not schedule["enabled"]:
                log.info("%s is disabled; it runs only on demand", label)
                continue
            try:
                expression = parse_schedule(schedule["expression"])
            except UnsupportedExpression as exc:
                log.warning(
                    "%s is not supported locally (%s); it runs only on demand: POST /_local/schedules/%s/run",
                    label,
                    exc,
                    schedule["name"],
                )
                continue
            except ValueError as exc:
                log.error("%s is invalid (%s); it runs only on demand", label, exc)
                continue
            self._spawn(self._run_timer(schedule, expression, label))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_now(self, name: str) -> InvocationResult:
        """Run a schedule's target once, synchronously (KeyError if there is no such schedule)."""
        schedule = self._schedules[name]
        log.info("schedule %s run on demand", name)
        return await self._pool.invoke(schedule["function"], self._event(schedule))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_timer(self, schedule: ScheduleSpec, expression: RateExpression | CronExpression, label: str) -> None:
        # The timer's own clock maps to real time as real = real_anchor + (virtual - virtual_anchor)
        # * scale.  Each wait is computed from the anchors, not from the last sleep, so no drift.
        virtual_anchor = virtual_now = datetime.now(UTC)
        real_anchor = time.monotonic()
        first = True
        while True:
            fire_at = expression.next_after(virtual_now)
            if fire_at is None:
                log.info("%s has no future fire time", label)
                return
            real_at = real_anchor + (fire_at - virtual_anchor).total_seconds() * self._scale
            log.log(
                logging.INFO if first else logging.DEBUG,
                "%s: next run at %s UTC%s",
                label,
                fire_at.strftime("%Y-%m-%d %H:%M:%S"),
                "" if self._scale == 1 else f" (scaled by {self._scale:g}: in {real_at - time.monotonic():.1f} s)",
            )
            first = False
            await asyncio.sleep(max(0.0, real_at - time.monotonic()))
            virtual_now = fire_at
            self._spawn(
                self._pool.invoke_async(
                    schedule["function"], self._event(schedule), source=f"schedule {schedule['name']}"
                )
            )

    def _event(self, schedule: ScheduleSpec) -> Any:
        if schedule["input"] is not None:
            return json.loads(schedule["input"])
        resource = self._manifest["resources"].get(schedule["name"], {})
        rule_arn = resource.get("arn") or (
            f"arn:aws:events:{self._manifest['region']}:{self._manifest['account_id']}:rule/{schedule['name']}"
        )
        return scheduled_event(rule_arn, self._manifest["region"], self._manifest["account_id"])
