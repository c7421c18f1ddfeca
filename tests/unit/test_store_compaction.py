"""Compaction folds every stored update into a new snapshot and deletes exactly those it folded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pycrdt import Doc, Text

from prdtool.collab import document, store
from tests.unit.moto_tables import moto_tables


@pytest.fixture
def docs(monkeypatch: pytest.MonkeyPatch, no_network: None) -> Iterator[None]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("DOCS_TABLE", "unit-docs")
    with moto_tables(store.DocItem):
        yield


def _typed(prd_id: str, keystrokes: int) -> str:
    """A document created with a title, then ``keystrokes`` one-character updates appended as an editor's
    would be; returns the text they make."""
    editor: Doc[Any] = Doc()
    editor.apply_update(document.new_document("# T\n", {"title": "T"}))
    store.create(prd_id, editor.get_update(), origin="server")
    text = editor.get(document.CONTENT, type=Text)
    for i in range(keystrokes):
        before = editor.get_state()
        text.insert(len(text), "abcdefghij"[i % 10])
        store.append_update(prd_id, editor.get_update(before), origin="alice")
    return str(text)


def test_compaction_folds_every_update_and_leaves_none(docs: None) -> None:
    keystrokes = 237
    expected = _typed("prd-1", keystrokes)

    result = store.compact("prd-1")

    assert result.folded == keystrokes
    assert result.editors == ("alice",)
    assert store.pending_updates("prd-1") == 0
    stored = store.read("prd-1")
    assert stored.update_sks == ()
    assert document.markdown_of(stored.doc) == expected
    assert store.compact("prd-1").folded == 0  # nothing new: nothing to do


def test_the_compactor_reads_updates_in_pages_and_loses_none_between_them(
        docs: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its read is paged (COMPACTION_PAGE_SIZE updates per Query: no single request holds the local
    stack's DynamoDB long); every update of every page is folded, none twice."""
    from prdtool import dynamo

    keystrokes = 2 * store.COMPACTION_PAGE_SIZE + 37
    expected = _typed("prd-paged", keystrokes)
    queries: list[dict[str, Any]] = []
    real_call = dynamo.call

    def call(operation: str, params: dict[str, Any]) -> Any:
        if operation == "Query":
            queries.append(dict(params))  # (a copy: the next page's request adds its start key)
        return real_call(operation, params)

    monkeypatch.setattr(dynamo, "call", call)
    result = store.compact("prd-paged")

    assert result.folded == keystrokes
    assert [q.get("Limit") for q in queries] == [store.COMPACTION_PAGE_SIZE] * 3
    assert "ExclusiveStartKey" not in queries[0] and all("ExclusiveStartKey" in q for q in queries[1:])
    assert store.pending_updates("prd-paged") == 0
    assert document.markdown_of(store.read("prd-paged").doc) == expected


def test_a_compactor_that_dies_between_two_delete_batches_loses_nothing(
        docs: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deletes go 25 per BatchWriteItem: a compactor that dies after the first leaves the rest
    of what it folded in, which the document reads as before and the next compaction folds."""
    from prdtool import dynamo

    keystrokes = 2 * dynamo.BATCH_WRITE_LIMIT + 7
    expected = _typed("prd-half-deleted", keystrokes)
    real_call = dynamo.call
    batches: list[int] = []

    def call(operation: str, params: dict[str, Any]) -> Any:
        if operation == "BatchWriteItem":
            if batches:
                raise _Crash("between two delete batches")
            batches.append(sum(len(requests) for requests in params["RequestItems"].values()))
        return real_call(operation, params)

    with monkeypatch.context() as crashing:
        crashing.setattr(dynamo, "call", call)
        with pytest.raises(_Crash):
            store.compact("prd-half-deleted")

    # the first batch went: the old snapshot and 24 updates (or 25 updates), the rest is still stored
    assert batches == [dynamo.BATCH_WRITE_LIMIT]
    left = store.pending_updates("prd-half-deleted")
    assert keystrokes - dynamo.BATCH_WRITE_LIMIT <= left < keystrokes
    assert document.markdown_of(store.read("prd-half-deleted").doc) == expected
    assert store.compact("prd-half-deleted").folded == left
    assert store.pending_updates("prd-half-deleted") == 0
    assert document.markdown_of(store.read("prd-half-deleted").doc) == expected


def test_updates_arriving_during_a_compaction_are_kept(docs: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """An update stored after the compactor's read is not in the snapshot and must not be deleted."""
    _typed("prd-3", 101)
    late_editor: Doc[Any] = Doc()
    late_editor.apply_update(store.read("prd-3").doc.get_update())
    real_write_snapshot = store.write_snapshot

    def write_then_someone_types(prd_id: str, state: bytes, *, origin: str = "server") -> str:
        sk = real_write_snapshot(prd_id, state, origin=origin)
        before = late_editor.get_state()
        late_editor.get(document.CONTENT, type=Text).insert(0, "LATE ")
        store.append_update(prd_id, late_editor.get_update(before), origin="bob")
        return sk

    monkeypatch.setattr(store, "write_snapshot", write_then_someone_types)
    result = store.compact("prd-3")

    assert result.folded == 101
    stored = store.read("prd-3")
    assert len(stored.update_sks) == 1  # bob's update survives the deletes
    assert document.markdown_of(stored.doc).startswith("LATE # T")


class _Crash(Exception):
    """The compactor's process dying at that point (nothing after it runs)."""


@pytest.mark.parametrize("crash_at", ["between two pages of the read", "after the new snapshot is written",
                                      "after head moved, before the deletes"])
def test_a_compactor_that_dies_midway_loses_nothing(docs: None, monkeypatch: pytest.MonkeyPatch,
                                                    crash_at: str) -> None:
    """Wherever a compaction stops, the document reads the same and the next compaction folds the rest."""
    from prdtool import dynamo

    keystrokes = 2 * store.COMPACTION_PAGE_SIZE + 11
    expected = _typed("prd-crash", keystrokes)
    with monkeypatch.context() as crashing:
        if crash_at == "between two pages of the read":
            real_call = dynamo.call

            def call(operation: str, params: dict[str, Any]) -> Any:
                if operation == "Query" and "ExclusiveStartKey" in params:
                    raise _Crash(crash_at)
                return real_call(operation, params)

            crashing.setattr(dynamo, "call", call)
        elif crash_at == "after the new snapshot is written":
            real_write = store.write_snapshot

            def write_then_die(prd_id: str, state: bytes, *, origin: str = "server") -> str:
                real_write(prd_id, state, origin=origin)
                raise _Crash(crash_at)

            crashing.setattr(store, "write_snapshot", write_then_die)
        else:
            def die(*_args: Any) -> None:
                raise _Crash(crash_at)

            crashing.setattr(store, "_delete_items", die)
        with pytest.raises(_Crash):
            store.compact("prd-crash")

    assert document.markdown_of(store.read("prd-crash").doc) == expected  # as if nothing had happened
    again = store.compact("prd-crash")
    assert again.folded == keystrokes  # every update is still there to fold (the snapshot may hold them too)
    assert store.pending_updates("prd-crash") == 0
    assert document.markdown_of(store.read("prd-crash").doc) == expected
