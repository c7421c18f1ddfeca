"""The bounds check that runs before pycrdt sees an update (prdtool.collab.updates)."""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from prdtool.collab import limits
from prdtool.collab.updates import UnsafeUpdate, inspect_update
from tests.unit.yjs_bytes import (
    any_content_update,
    deep_any,
    deep_any_object,
    doc_content_update,
    embed_update,
    var_uint,
)


def _real_updates() -> list[bytes]:
    """Updates of every content kind, as pycrdt (yrs) writes them for real edits."""
    doc: Doc[Any] = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text, meta, arr = doc.get("content", type=Text), doc.get("meta", type=Map), doc.get("arr", type=Array)
    text.insert(0, "hello wörld 😀 — ")
    text.insert(3, "X")
    del text[1:4]
    text.format(0, 3, {"bold": True, "link": {"href": "https://x", "n": [1, 2, {"a": None}]}})
    text.insert_embed(2, {"img": [1, 2.5, "x"]})
    meta["title"] = "T"
    meta["nested"] = {"a": [1, {"b": [True, None, 1e300, -5, 2**40]}]}
    meta["bin"] = b"\x00\x01"
    meta["sub"] = Map({"x": 1})
    arr.append(Array([1, 2, 3]))
    arr.append(Text("inner"))
    xml = doc.get("xml", type=XmlFragment)
    xml.children.append(XmlElement("p", {"class": "c"}, [XmlText("hi")]))
    meta["doc"] = Doc()
    updates.append(doc.get_update())
    return updates


REAL = _real_updates()


@pytest.mark.parametrize("update", REAL, ids=[f"update{k}" for k in range(len(REAL))])
def test_real_updates_of_every_kind_pass(update: bytes) -> None:
    shape = inspect_update(update)
    assert shape.structs + shape.delete_ranges > 0


def test_what_a_real_document_holds_is_counted() -> None:
    whole = inspect_update(REAL[-1])
    assert whole.structs >= 20 and whole.delete_ranges >= 1
    assert whole.max_depth == 4  # meta["nested"]: {a: [1, {b: [...]}]}


@pytest.mark.parametrize("build", [any_content_update, doc_content_update], ids=["any", "subdoc-options"])
def test_nesting_is_bounded(build: Any) -> None:
    inspect_update(build(deep_any(limits.MAX_ANY_DEPTH)))
    inspect_update(build(deep_any_object(limits.MAX_ANY_DEPTH)))
    for value in (deep_any(limits.MAX_ANY_DEPTH + 1), deep_any_object(limits.MAX_ANY_DEPTH + 1), deep_any(100_000)):
        with pytest.raises(UnsafeUpdate) as refused:
            inspect_update(build(value))
        assert refused.value.code == "too_deep"


def test_deep_json_content_is_bounded() -> None:
    inspect_update(embed_update('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}'))
    with pytest.raises(UnsafeUpdate) as refused:
        inspect_update(embed_update("[" * 1000 + "]" * 1000))
    assert refused.value.code == "too_deep"


@pytest.mark.parametrize("update, code", [
    (var_uint(2**50) + b"\x00", "bad_update"),  # claims 2**50 clients
    (var_uint(1) + var_uint(2**40) + var_uint(5) + var_uint(0), "bad_update"),  # 2**40 structs
    (var_uint(1) + var_uint(1) + var_uint(5) + var_uint(0) + b"\x04\x01" + var_uint(7) + b"content"
     + var_uint(2**40) + b"ab", "bad_update"),  # a string of 2**40 bytes
    (var_uint(0) + var_uint(1) + var_uint(5) + var_uint(2**40), "bad_update"),  # 2**40 deleted ranges
    (var_uint(1) + var_uint(1) + var_uint(5) + var_uint(2**32) + b"\x00" + var_uint(1) + var_uint(0),
     "bad_update"),  # a clock past yrs' 32 bits
    (b"\x00\x00\x00", "bad_update"),  # trailing bytes
    (b"", "bad_update"),
    (b"\x01\x01\x05\x00\x1f", "bad_update"),  # an unknown content type
    (b"\x00" * (limits.MAX_UPDATE_BYTES + 1), "too_large"),
])
def test_malformed_and_oversized_updates_are_refused(update: bytes, code: str) -> None:
    with pytest.raises(UnsafeUpdate) as refused:
        inspect_update(update)
    assert refused.value.code == code


def _mutations(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        data = bytearray(rng.choice(REAL))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data)) if data else 0
            roll = rng.random()
            if roll < 0.4 and data:
                data[pos] = rng.randrange(256)
            elif roll < 0.7:
                data.insert(pos, rng.randrange(256))
            elif data:
                del data[pos]
        out.append(bytes(data))
    return out


def test_garbage_only_ever_raises_unsafe_update() -> None:
    for update in _mutations(5000, seed=1):
        with contextlib.suppress(UnsafeUpdate):  # anything else fails the test
            inspect_update(update)


def test_what_passes_the_check_never_crashes_pycrdt(tmp_path: Path) -> None:
    """Apply every mutated update that passes the check, in a child process: it must exit cleanly
    (pycrdt may refuse them with ValueError; a SIGSEGV would kill the child)."""
    accepted = []
    for update in _mutations(5000, seed=2):
        try:
            inspect_update(update)
        except UnsafeUpdate:
            continue
        accepted.append(update.hex())
    assert len(accepted) > 200
    (tmp_path / "updates.txt").write_text("\n".join(accepted))
    child = textwrap.dedent(f"""
        from pycrdt import Doc
        for line in open({str(tmp_path / "updates.txt")!r}):
            try:
                Doc().apply_update(bytes.fromhex(line.strip()))
            except ValueError:
                pass
        print("done")
    """)
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "done" in result.stdout, result.stderr[-500:]
