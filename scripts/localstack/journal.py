"""The local stack's write-ahead journal: what the emulated AWS acknowledged survives a crash.

Snapshots (``provision.save_state``) copy every table and bucket out of moto, which takes seconds
with real data, so they are taken now and then; the journal covers the time in between.  Every
write moto applies to a DynamoDB item or an S3 object is appended here *before* moto answers it,
so whatever a caller was told is stored can be rebuilt after a crash: the last snapshot, then the
journal's records after it.

What is journaled is the **after-image** of what a write touched — the item or object as it is
once the write is applied (or "gone") — not the request.  Replaying requests over a snapshot is
wrong here, because a snapshot is read table by table while writes go on: a write that landed in
the snapshot would be applied again, and ``ADD`` counters (the rate limiter, a PRD's owner count),
``list_append`` and the like would count twice.  Images are idempotent: replaying any suffix of the
journal that starts before the snapshot began, in order, leaves every key as its last image says,
and a key with no image after the snapshot began is as the snapshot read it (it was not written
since).  So a snapshot records the sequence number the journal had when its reading began, and a
restore replays only the records after it; only the last image of each key is needed.

Records are appended with one ``write(2)`` each and not fsync'ed: a crash of the process (SIGKILL,
a closed terminal, an exception) loses nothing the kernel has been given; only a crash of the
machine itself could.  An fsync (0.37 ms per write on this machine's disk) would multiply the
journal's cost several times over, against a failure a local stack need not survive.  A record
cut short by a crash mid-``write`` fails its length or CRC check and ends its segment: it was
never acknowledged.

Files: ``<dir>/<first sequence number, 20 digits>.journal`` segments.  The writer (in the moto
process, :class:`JournalWriter`) appends to one segment and starts a new one when asked
(:meth:`JournalWriter.rotate`, at the start of each snapshot), so segments wholly covered by a
snapshot can be deleted (:func:`discard_through`).  A record is ``>IQI`` (body length, sequence
number, CRC-32 of the body) then the body: ``>I`` length of a JSON list describing the images, the
JSON, then the object bodies those images carry, in order.  DynamoDB items are in DynamoDB JSON
with binary values in base64, as in the snapshots.

This module is standard library only and knows nothing of moto: the hooks that capture images
live in ``moto_main.py``; what applies them to a restarted moto lives in ``provision.py``.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("localstack.journal")

SUFFIX = ".journal"
_RECORD = struct.Struct(">IQI")  # body length, sequence number, CRC-32 of the body
_META = struct.Struct(">I")


@dataclass(frozen=True)
class ItemImage:
    """A DynamoDB item after a write: ``item`` None means the key holds no item."""

    table: str  # the table's name in moto
    key: dict[str, Any]  # DynamoDB JSON of the key attributes, binary values in base64
    item: dict[str, Any] | None  # DynamoDB JSON of the whole item, binary values in base64

    @property
    def identity(self) -> tuple[str, str, str]:
        return ("dynamodb", self.table, json.dumps(self.key, sort_keys=True))


@dataclass(frozen=True)
class ObjectImage:
    """An S3 object's latest version after a write: ``body`` None means there is none."""

    bucket: str
    key: str
    body: bytes | None = field(repr=False)
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # user metadata, without ``x-amz-meta-``

    @property
    def identity(self) -> tuple[str, str, str]:
        return ("s3", self.bucket, self.key)


Image = ItemImage | ObjectImage


def segment_name(first_sequence: int) -> str:
    return f"{first_sequence:020d}{SUFFIX}"


def segments(directory: Path) -> list[tuple[int, Path]]:
    """The journal's segments, oldest first, with the sequence number each starts at."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        stem = path.name.removesuffix(SUFFIX)
        if path.name.endswith(SUFFIX) and stem.isdigit():
            found.append((int(stem), path))
    return sorted(found)


# ---------------------------------------------------------------- encoding


def _json_default(value: Any) -> Any:
    # Binary DynamoDB values (B, BS) are the only bytes in an item: base64, as the snapshots keep them.
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot journal a {type(value).__name__}")


def encode_record(sequence: int, images: Sequence[Image]) -> bytes:
    described: list[dict[str, Any]] = []
    bodies: list[bytes] = []
    for image in images:
        if isinstance(image, ItemImage):
            described.append({"dynamodb": image.table, "key": image.key, "item": image.item})
        else:
            described.append(
                {
                    "s3": image.bucket,
                    "key": image.key,
                    "size": None if image.body is None else len(image.body),
                    "content_type": image.content_type,
                    "metadata": image.metadata,
                }
            )
            if image.body is not None:
                bodies.append(image.body)
    meta = json.dumps(described, separators=(",", ":"), default=_json_default).encode()
    body = b"".join([_META.pack(len(meta)), meta, *bodies])
    return _RECORD.pack(len(body), sequence, zlib.crc32(body)) + body


def _decode_body(body: bytes) -> list[Image]:
    (meta_length,) = _META.unpack_from(body)
    offset = _META.size + meta_length
    images: list[Image] = []
    for entry in json.loads(body[_META.size : offset]):
        if "dynamodb" in entry:
            images.append(ItemImage(entry["dynamodb"], entry["key"], entry["item"]))
            continue
        size = entry["size"]
        data = None if size is None else body[offset : offset + size]
        offset += size or 0
        images.append(ObjectImage(entry["s3"], entry["key"], data, entry["content_type"], entry["metadata"]))
    return images


def _frames(path: Path, *, warn: bool) -> Iterator[tuple[int, bytes]]:
    """The complete records of one segment: sequence number and body, up to a torn tail if any."""
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        header_end = offset + _RECORD.size
        complete = header_end <= len(data)
        if complete:
            length, sequence, crc = _RECORD.unpack_from(data, offset)
            body = data[header_end : header_end + length]
            complete = len(body) == length and zlib.crc32(body) == crc
        if not complete:
            if warn:
                log.warning(
                    "ignored the last %d bytes of %s: a record cut short by a crash while it was written"
                    " (it was never acknowledged)",
                    len(data) - offset,
                    path.name,
                )
            return
        offset = header_end + length
        yield sequence, body


def read_records(directory: Path, after: int = 0) -> Iterator[tuple[int, list[Image]]]:
    """Every complete record with a sequence number above ``after``, oldest first."""
    for _first, path in segments(directory):
        for sequence, body in _frames(path, warn=True):
            if sequence > after:
                yield sequence, _decode_body(body)


@dataclass(frozen=True)
class Replay:
    """What a restore must apply: the last image of every key written after a snapshot began."""

    images: list[Image]
    records: int  # records read (those after the snapshot's sequence number)
    last_sequence: int  # the highest sequence number the journal has used (0 if none)


def latest_images(directory: Path, after: int = 0) -> Replay:
    """The last image of each key in the records after ``after`` (earlier ones are overwritten anyway)."""
    latest: dict[tuple[str, str, str], Image] = {}
    records = 0
    for _sequence, images in read_records(directory, after):
        records += 1
        for image in images:
            latest.pop(image.identity, None)  # keep the order of last writes
            latest[image.identity] = image
    return Replay(list(latest.values()), records, last_sequence(directory))


def last_sequence(directory: Path) -> int:
    """The highest sequence number the journal has used: its last record, or its newest segment's name.

    A segment is named after the number its first record gets, so an empty newest segment (opened
    at a rotation, or by a start that wrote nothing) still tells where numbering stands even when
    the segments before it were discarded.
    """
    for first, path in reversed(segments(directory)):
        last = None
        for sequence, _body in _frames(path, warn=False):
            last = sequence
        if last is not None:
            return last
        if first > 1:
            return first - 1
    return 0


def discard_through(directory: Path, sequence: int) -> int:
    """Delete the segments whose records all have numbers up to ``sequence`` (a committed snapshot's).

    The newest segment is always kept: the writer may be appending to it, and its name carries
    the numbering forward.  Returns how many segments were deleted.
    """
    found = segments(directory)
    deleted = 0
    for (_first, path), (next_first, _next) in itertools.pairwise(found):
        if next_first - 1 <= sequence:
            path.unlink(missing_ok=True)
            deleted += 1
    return deleted


# ---------------------------------------------------------------- the writer (in moto's process)


class JournalWriter:
    """Appends records to the journal; thread-safe.  Inactive (appends nothing) until :meth:`start`.

    Starting late is what lets a restart restore the snapshot and replay the journal into a fresh
    moto without journaling all of that again.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._sequence = 0
        self._segment_bytes = 0

    @property
    def active(self) -> bool:
        return self._fd is not None

    def start(self, floor: int = 0) -> int:
        """Open a new segment after the highest number used so far (at least ``floor``); that number."""
        with self._lock:
            if self._fd is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._sequence = max(last_sequence(self.directory), floor)
                self._open_segment()
            return self._sequence

    def append(self, capture: Callable[[], Sequence[Image]]) -> int | None:
        """Append what ``capture()`` returns as one record; its sequence number (None if nothing).

        ``capture`` runs under the journal's lock, so the order of records is the order in which
        their images were read: the last image of a key in the journal is never older than another.
        Raises ``OSError`` if the record cannot be written; the caller must then fail the request.
        """
        if self._fd is None:
            return None
        with self._lock:
            if self._fd is None:
                return None
            images = capture()
            if not images:
                return None
            sequence = self._sequence + 1
            record = encode_record(sequence, images)
            view = memoryview(record)
            while view:  # one write(2) in practice; a short write is continued, never interleaved
                written = os.write(self._fd, view)
                view = view[written:]
            self._sequence = sequence
            self._segment_bytes += len(record)
            return sequence

    def rotate(self) -> int:
        """Start a new segment; the last sequence number of the one closed (what a snapshot records)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._open_segment()
            return self._sequence

    def status(self) -> dict[str, Any]:
        """Whether it journals, the last sequence number, and the bytes appended since the last rotation."""
        with self._lock:
            return {"active": self.active, "sequence": self._sequence, "bytes": self._segment_bytes}

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _open_segment(self) -> None:
        # Truncating is safe: a segment named after a number not used yet holds no complete record
        # (at most the torn tail of a crash, or nothing at all).
        path = self.directory / segment_name(self._sequence + 1)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._segment_bytes = 0
