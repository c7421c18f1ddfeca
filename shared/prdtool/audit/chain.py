"""The tamper-evident storage format of the audit trail (pure functions, no I/O).

A partition is one UTC date.  Its objects are ``audit/date=YYYY-MM-DD/<seq>.jsonl.gz`` with
``seq`` = 1, 2, 3, ... (zero-padded, so keys sort in chain order): gzip-compressed JSON lines, one
stored entry a line, in chain order.  Each stored entry is the entry's JSON plus

* ``prev`` — the ``hash`` of the entry before it in the partition (the first entry of the first
  object chains from :func:`genesis`), and
* ``hash`` — sha256 hex of ``prev`` + the canonical JSON (sorted keys, no spaces) of the stored
  entry without ``hash``.

So changing, deleting, inserting or reordering any entry or object breaks a link that
:func:`check_objects` reports; a truncated tail is caught against the chain head kept in DynamoDB.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

PREFIX = "audit/"
SEQ_DIGITS = 10
# Used with fullmatch: with re.match, "$" would also accept a key ending in "\n".
_KEY = re.compile(r"audit/date=(\d{4}-\d{2}-\d{2})/(\d{" + str(SEQ_DIGITS) + r"})\.jsonl\.gz")


def partition_of(at_ms: int) -> str:
    """The UTC date (``YYYY-MM-DD``) an entry at ``at_ms`` belongs to."""
    return datetime.fromtimestamp(at_ms / 1000, UTC).date().isoformat()


def parse_date(value: str) -> str:
    """``value`` if it is a real ``YYYY-MM-DD`` date, else ValueError."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(f"{value!r} is not a YYYY-MM-DD date")
    return date.fromisoformat(value).isoformat()


def partition_prefix(day: str) -> str:
    return f"{PREFIX}date={day}/"


def object_key(day: str, seq: int) -> str:
    return f"{partition_prefix(day)}{seq:0{SEQ_DIGITS}d}.jsonl.gz"


def parse_key(key: str) -> tuple[str, int] | None:
    """``(date, seq)`` of an audit object key, or None for anything else."""
    match = _KEY.fullmatch(key)
    return (match.group(1), int(match.group(2))) if match else None


def genesis(day: str) -> str:
    """The ``prev`` of a partition's first entry: fixed per date, so a partition cannot be re-rooted."""
    return hashlib.sha256(f"prdtool-audit:{day}".encode()).hexdigest()


def canonical(data: dict[str, Any]) -> bytes:
    """The canonical UTF-8 JSON of ``data``: sorted keys, no spaces, non-ASCII text kept as is.

    Never raises on text UTF-8 cannot encode (a lone surrogate; the recorder escapes those, this is
    defence in depth): ``backslashreplace`` writes it as its ``\\udXXX`` JSON escape, which is
    valid JSON inside the string it belongs to and decodes back to the same text, so the entry
    hashes the same when the verifier reads it back.  Text UTF-8 can encode is unaffected.
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return text.encode("utf-8", "backslashreplace")


def entry_hash(stored: dict[str, Any]) -> str:
    """The hash a stored entry must carry (computed over everything but ``hash`` itself)."""
    body = {k: v for k, v in stored.items() if k != "hash"}
    return hashlib.sha256(str(body.get("prev", "")).encode() + canonical(body)).hexdigest()


def link(entries: Iterable[dict[str, Any]], prev: str) -> list[dict[str, Any]]:
    """Chain ``entries`` (entry dicts, in order) after ``prev``; returns the stored entries."""
    stored = []
    for entry in entries:
        item = {k: v for k, v in entry.items() if k not in ("prev", "hash")}
        item["prev"] = prev
        item["hash"] = prev = entry_hash(item)
        stored.append(item)
    return stored


def encode(stored: Sequence[dict[str, Any]]) -> bytes:
    lines = b"".join(canonical(item) + b"\n" for item in stored)
    return gzip.compress(lines, compresslevel=6, mtime=0)


def decode(body: bytes) -> list[dict[str, Any]]:
    """The stored entries of an object (ValueError if it is not gzip JSON lines of objects)."""
    try:
        text = gzip.decompress(body).decode()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a gzip UTF-8 object: {exc}") from exc
    items = []
    # Split on "\n" only: str.splitlines() also splits on U+2028, U+0085, \x1c... which JSON written
    # with ensure_ascii=False leaves raw inside strings (a title may hold them).
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number} is not JSON") from exc
        if not isinstance(item, dict):
            raise ValueError(f"line {number} is not a JSON object")
        items.append(item)
    return items


@dataclass
class ChainReport:
    """What :func:`check_objects` found in one partition."""

    day: str
    entries: int = 0
    objects: int = 0
    last_seq: int = 0
    last_hash: str = ""
    ids: set[str] = field(default_factory=set)
    object_hashes: dict[int, str] = field(default_factory=dict)  # seq -> hash of its last entry
    duplicates: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)

    def problem(self, key: str, line: int, text: str) -> None:
        self.problems.append({"object": key, "line": line, "problem": text})


def check_objects(day: str, objects: Sequence[tuple[str, bytes | None]]) -> ChainReport:
    """Recompute a partition's chain from its objects (``(key, body)``; body None = unreadable).

    Reports each broken link once, then resynchronises on the stored hash so one edit is one
    problem, not a cascade.  Duplicate ids (a redelivered batch appended twice after a crash) are
    counted, not reported: they are chained like any entry and the index keeps one of each.
    """
    report = ChainReport(day=day, last_hash=genesis(day))
    expected_prev = report.last_hash
    expected_seq = 1
    for key, body in sorted(objects, key=lambda o: o[0]):
        parsed = parse_key(key)
        if parsed is None or parsed[0] != day:
            report.problem(key, 0, "unexpected object in the partition")
            continue
        seq = parsed[1]
        report.objects += 1
        if seq > expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
            report.problem(object_key(day, expected_seq), 0, f"object(s) {missing} missing (deleted)")
        expected_seq = seq + 1
        report.last_seq = seq
        if body is None:
            report.problem(key, 0, "object unreadable")
            continue
        try:
            items = decode(body)
        except ValueError as exc:
            report.problem(key, 0, f"object unreadable: {exc}")
            continue
        if not items:
            report.problem(key, 0, "object holds no entries")
        for number, item in enumerate(items, start=1):
            report.entries += 1
            if item.get("prev") != expected_prev:
                report.problem(key, number, "chain broken: prev is not the previous entry's hash "
                                            "(an entry or object was deleted, inserted or reordered)")
            if item.get("hash") != entry_hash(item):
                report.problem(key, number, "hash mismatch: the entry was modified")
            at = item.get("at")
            if not isinstance(at, int) or isinstance(at, bool) or partition_of(at) != day:
                report.problem(key, number, "entry does not belong to this date")
            entry_id = str(item.get("id", ""))
            if entry_id in report.ids:
                report.duplicates += 1
            report.ids.add(entry_id)
            expected_prev = str(item.get("hash", ""))
        report.last_hash = report.object_hashes[seq] = expected_prev
    return report


def check_head(report: ChainReport, head_seq: int, head_hash: str) -> None:
    """Compare the partition with its chain head (DynamoDB): a shorter chain was truncated.

    The head may lag behind S3 (a writer stopped between the object and the head update), never
    lead it: object ``head_seq`` must exist and end with the head's hash.
    """
    if head_seq <= 0:
        return
    where = object_key(report.day, head_seq)
    hash_at_head = report.object_hashes.get(head_seq)
    if report.last_seq < head_seq:
        report.problem(where, 0, f"truncated: the chain head records object {head_seq} "
                                 f"but the partition ends at object {report.last_seq}")
    elif hash_at_head is not None and hash_at_head != head_hash:
        report.problem(where, 0, "the chain head's hash does not match this object's last entry")
