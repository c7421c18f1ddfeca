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


def content_update(doc: Doc, markdown: str) -> bytes | None:
    """Edit ``Y.Text("content")`` of ``doc`` into ``markdown``; the incremental update, or None if
    it already is.  Only what differs is deleted and inserted (a line diff, then a character diff
    inside each changed run of lines), so a restore keeps the untouched text's identity: a peer's
    cursor there stays put and concurrent edits elsewhere merge."""
    from difflib import SequenceMatcher

    text = doc.get(CONTENT, type=Text)
    current = str(text)
    if current == markdown:
        return None
    old_lines, new_lines = current.splitlines(keepends=True), markdown.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []  # (start, end) in the current text, replacement
    offsets = [0]
    for line in old_lines:
        offsets.append(offsets[-1] + len(line))
    for tag, i1, i2, j1, j2 in SequenceMatcher(a=old_lines, b=new_lines, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        old_run, new_run = "".join(old_lines[i1:i2]), "".join(new_lines[j1:j2])
        if tag == "replace" and len(old_run) * len(new_run) <= 4_000_000:
            for ctag, a1, a2, b1, b2 in SequenceMatcher(a=old_run, b=new_run, autojunk=False).get_opcodes():
                if ctag != "equal":
                    edits.append((offsets[i1] + a1, offsets[i1] + a2, new_run[b1:b2]))
        else:
            edits.append((offsets[i1], offsets[i2], new_run))
    def at(index: int) -> int:
        # pycrdt 0.14's Text counts UTF-8 bytes, not code points ("🙂" is 4 long there).
        return len(current[:index].encode("utf-8"))

    before = doc.get_state()
    with doc.transaction(origin="server"):
        for start, end, replacement in reversed(edits):  # from the end: earlier offsets stay valid
            if end > start:
                del text[at(start) : at(end)]
            if replacement:
                text.insert(at(start), replacement)
    return doc.get_update(before)


def splice_update(doc: Doc, start: int, end: int, replacement: str) -> bytes | None:
    """Replace ``[start, end)`` (``str`` offsets into ``Y.Text("content")``) by ``replacement`` in
    ``doc``, as one edit; the incremental update, or None if nothing changes."""
    text = doc.get(CONTENT, type=Text)
    current = str(text)
    if current[start:end] == replacement:
        return None
    a, b = len(current[:start].encode("utf-8")), len(current[:end].encode("utf-8"))  # (UTF-8 offsets)
    before = doc.get_state()
    with doc.transaction(origin="server"):
        if b > a:
            del text[a:b]
        if replacement:
            text.insert(a, replacement)
    return doc.get_update(before)
