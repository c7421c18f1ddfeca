"""The PRD's Yjs document shape (DESIGN 3.1): ``Y.Text("content")`` + ``Y.Map("meta")``.

Any Yjs client that edits these two shared types is a first-class editor.  Changes made by the
server (title rename, later AI apply and restore) are applied as *edits* to the existing types and
shipped as incremental updates, never by rebuilding the document from Markdown, so clients that
hold history never see duplicated content.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pycrdt import Doc, Map, Text, merge_updates

CONTENT = "content"
META = "meta"


def new_document(markdown: str, meta: Mapping[str, Any]) -> bytes:
    """A fresh document holding ``markdown`` and ``meta``, as one V1 update."""
    doc: Doc[Any] = Doc()
    text = doc.get(CONTENT, type=Text)
    meta_map = doc.get(META, type=Map)
    with doc.transaction(origin="server"):
        if markdown:
            text.insert(0, markdown)
        for key, value in meta.items():
            meta_map[key] = value
    return doc.get_update()


def load(updates: Iterable[bytes]) -> Doc:
    """A document built from a snapshot and any number of updates, in any order.

    The updates are merged first and applied once: pycrdt 0.14 (yrs) applying updates one by one
    out of causal order loses content (1,000 shuffled keystrokes with mid-text inserts gave 125
    characters; merged, 1,000), and stored updates come back in key order, not causal order.
    """
    parts = list(updates)
    doc: Doc[Any] = Doc()
    doc.get(CONTENT, type=Text)
    doc.get(META, type=Map)
    if len(parts) == 1:
        doc.apply_update(parts[0])
    elif parts:
        doc.apply_update(merge_updates(*parts))
    return doc


def markdown_of(doc: Doc) -> str:
    return str(doc.get(CONTENT, type=Text))


def meta_of(doc: Doc) -> dict[str, Any]:
    """``Y.Map("meta")`` as plain values; any editor can write there, so only JSON values are read
    (shared types nested in it are skipped: a hostile client can nest them deep enough to exhaust
    the recursion of ``to_py``)."""
    meta_map = doc.get(META, type=Map)
    out: dict[str, Any] = {}
    for key in list(meta_map.keys()):
        value = meta_map.get(key)
        if value is None or isinstance(value, str | int | float | bool | list | dict):
            out[key] = value
    return out


def meta_update(doc: Doc, changes: Mapping[str, Any]) -> bytes | None:
    """Apply ``changes`` to ``Y.Map("meta")`` of ``doc``; the incremental update, or None if no-op."""
    meta_map = doc.get(META, type=Map)
    changed = {k: v for k, v in changes.items() if meta_map.get(k) != v}
    if not changed:
        return None
    before = doc.get_state()
    with doc.transaction(origin="server"):
        for key, value in changed.items():
            meta_map[key] = value
    return doc.get_update(before)
