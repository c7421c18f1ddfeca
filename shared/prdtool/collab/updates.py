"""A bounds check of Yjs updates before the CRDT library sees them.

pycrdt (yrs) refuses malformed updates with a ``ValueError``, and it checks declared lengths against
the bytes actually present, so "claims 2**40 structs" costs nothing.  What it does not survive is
depth: an update of 200 KB holding an ``Any`` array nested 100,000 deep overflows its stack and the
process dies with SIGSEGV — in a Lambda container that is a crash of every invocation it serves, not
an error frame.  So every update is walked here first, in pure Python and without recursion, and
refused unless it is a well-formed Yjs V1 update within :mod:`limits` (nesting depth, struct and
delete-range counts, clocks that fit yrs' 32 bits).

The walk follows the V1 encoding as Yjs writes it (``yjs/src/utils/encoding.js`` ``readStructs``,
``Item.js`` content refs 1-9, lib0 ``readAny``) and costs about 10 µs for a keystroke update.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from . import limits

_MAX_CLOCK: Final = 2**32 - 1  # yrs keeps clocks as u32
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKETS = re.compile(r"[\[\]{}]")
# Item content refs (Yjs ``contentRefs``): 1 Deleted, 2 JSON, 3 Binary, 4 String, 5 Embed, 6 Format,
# 7 Type, 8 Any, 9 Doc.  0 is GC and 10 is Skip (not items).
_TYPE_REFS_WITH_NAME: Final = (3, 5)  # YXmlElement, YXmlHook carry a name


class UnsafeUpdate(ValueError):
    """An update that is malformed or beyond a limit; ``code`` is the error frame's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True, slots=True)
class UpdateShape:
    """What the walk counted (for metrics and tests)."""

    structs: int
    delete_ranges: int
    max_depth: int


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.end = data, 0, len(data)

    def fail(self, what: str) -> UnsafeUpdate:
        return UnsafeUpdate("bad_update", f"the update is not a valid Yjs update ({what} at byte {self.pos})")

    def byte(self) -> int:
        if self.pos >= self.end:
            raise self.fail("truncated")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def var_uint(self) -> int:
        data, pos, end = self.data, self.pos, self.end
        value = shift = 0
        while True:
            if pos >= end:
                self.pos = pos
                raise self.fail("truncated varUint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                return value
            shift += 7
            if shift > 63:
                self.pos = pos
                raise self.fail("varUint too long")

    def count(self, what: str) -> int:
        """A declared element count: every element takes at least one byte, so it cannot exceed
        what is left (refusing absurd counts before looping over them)."""
        n = self.var_uint()
        if n > self.end - self.pos:
            raise self.fail(f"{what} count {n} larger than the update")
        return n

    def skip(self, n: int) -> None:
        if n > self.end - self.pos:
            raise self.fail("truncated")
        self.pos += n

    def var_bytes(self) -> bytes:
        n = self.var_uint()
        if n > self.end - self.pos:
            raise self.fail("truncated")
        start = self.pos
        self.pos += n
        return self.data[start:self.pos]

    def var_string(self) -> str:
        raw = self.var_bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("a string that is not UTF-8") from None

    def var_int(self) -> None:
        while self.byte() & 0x80:
            pass

    def any_value(self) -> int:
        """Skip one lib0 ``Any`` value without recursion; returns its nesting depth.

        The stack holds one ``[values left, is an object, a key comes next]`` per open array or
        object; the outermost entry stands for the single value asked for.
        """
        stack: list[list[int]] = [[1, 0, 0]]
        deepest = 0
        while stack:
            level = stack[-1]
            if level[0] == 0:
                stack.pop()
                continue
            if level[2]:  # an object's key comes before each of its values
                self.var_bytes()
                level[2] = 0
                continue
            level[0] -= 1
            level[2] = level[1]
            tag = self.byte()
            if tag in (127, 126, 121, 120):  # undefined, null, false, true
                continue
            if tag == 125:  # varInt
                self.var_int()
            elif tag == 124:  # float32
                self.skip(4)
            elif tag in (123, 122):  # float64, bigint64
                self.skip(8)
            elif tag in (119, 116):  # string, Uint8Array
                self.var_bytes()
            elif tag in (118, 117):  # object, array
                is_object = int(tag == 118)
                stack.append([self.count("object" if is_object else "array"), is_object, is_object])
                depth = len(stack) - 1
                if depth > limits.MAX_ANY_DEPTH:
                    raise UnsafeUpdate("too_deep", f"values nested deeper than {limits.MAX_ANY_DEPTH}")
                deepest = max(deepest, depth)
            else:
                raise self.fail(f"unknown value tag {tag}")
        return deepest


def _check_json_depth(text: str) -> None:
    """Refuse JSON texts nested deeper than the limit (strings stripped first; no parsing)."""
    if "[" not in text and "{" not in text:
        return
    depth = 0
    for bracket in _JSON_BRACKETS.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > limits.MAX_JSON_DEPTH:
            raise UnsafeUpdate("too_deep", f"JSON content nested deeper than {limits.MAX_JSON_DEPTH}")


def inspect_update(update: bytes) -> UpdateShape:
    """Walk a Yjs V1 update; :class:`UnsafeUpdate` unless it is well-formed and within limits.

    Codes: ``too_large`` (over :data:`limits.MAX_UPDATE_BYTES` or too many structs/ranges),
    ``too_deep`` (nesting), ``bad_update`` (anything malformed).
    """
    if len(update) > limits.MAX_UPDATE_BYTES:
        raise UnsafeUpdate("too_large", f"updates are limited to {limits.MAX_UPDATE_BYTES} bytes; split the change")
    r = _Reader(update)
    structs = ranges = deepest = 0
    for _ in range(r.count("client")):
        n = r.count("struct")
        structs += n
        if structs > limits.MAX_STRUCTS_PER_UPDATE:
            raise UnsafeUpdate("too_large", f"more than {limits.MAX_STRUCTS_PER_UPDATE} structs in one update")
        r.var_uint()  # client
        clock = r.var_uint()
        for _ in range(n):
            info = r.byte()
            ref = info & 0x1F
            if ref in (0, 10):  # GC, Skip
                length = r.var_uint()
            else:
                length, depth = _item(r, info, ref)
                deepest = max(deepest, depth)
            clock += length
            if clock > _MAX_CLOCK:
                raise r.fail("a clock beyond 2**32")
    for _ in range(r.count("delete set client")):
        r.var_uint()  # client
        n = r.count("delete range")
        ranges += n
        if ranges > limits.MAX_DELETE_RANGES_PER_UPDATE:
            raise UnsafeUpdate("too_large", f"more than {limits.MAX_DELETE_RANGES_PER_UPDATE} deleted ranges")
        for _ in range(n):
            start, length = r.var_uint(), r.var_uint()
            if start + length > _MAX_CLOCK:
                raise r.fail("a deleted range beyond 2**32")
    if r.pos != r.end:
        raise r.fail(f"{r.end - r.pos} bytes after the delete set")
    return UpdateShape(structs, ranges, deepest)


def _item(r: _Reader, info: int, ref: int) -> tuple[int, int]:
    """Skip one item (origins, parent, content); its length in clock units and nesting depth."""
    if info & 0x80:  # origin
        r.var_uint()
        r.var_uint()
    if info & 0x40:  # right origin
        r.var_uint()
        r.var_uint()
    if info & 0xC0 == 0:  # the parent is written out
        if r.var_uint() == 1:
            r.var_string()  # a root type's name
        else:
            r.var_uint()
            r.var_uint()
        if info & 0x20:
            r.var_string()  # parentSub (a map key)
    if ref == 1:  # Deleted
        return r.var_uint(), 0
    if ref == 2:  # JSON (legacy): strings, "undefined" or JSON texts
        n = r.count("JSON content")
        for _ in range(n):
            _check_json_depth(r.var_string())
        return n, 0
    if ref == 3:  # Binary
        r.var_bytes()
        return 1, 0
    if ref == 4:  # String: length in UTF-16 code units, as Yjs counts
        text = r.var_string()
        return len(text.encode("utf-16-le")) // 2, 0
    if ref == 5:  # Embed
        _check_json_depth(r.var_string())
        return 1, 0
    if ref == 6:  # Format: key, JSON value
        r.var_string()
        _check_json_depth(r.var_string())
        return 1, 0
    if ref == 7:  # Type
        if r.var_uint() in _TYPE_REFS_WITH_NAME:
            r.var_string()
        return 1, 0
    if ref == 8:  # Any
        n = r.count("Any content")
        deepest = 0
        for _ in range(n):
            deepest = max(deepest, r.any_value())
        return n, deepest
    if ref == 9:  # Doc: guid, options
        r.var_string()
        return 1, r.any_value()
    raise r.fail(f"unknown content type {ref}")

