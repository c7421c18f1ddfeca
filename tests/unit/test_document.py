"""The Yjs document shape (DESIGN 3.1) and server-side edits as incremental updates."""

from __future__ import annotations

from pycrdt import Doc, Map, Text

from prdtool.collab import document


def test_new_document_has_the_contract_shape() -> None:
    update = document.new_document("# Title\n\nBody", {"title": "Title", "owner": "alice"})
    doc = Doc()
    doc.apply_update(update)
    assert str(doc.get("content", type=Text)) == "# Title\n\nBody"
    assert doc.get("meta", type=Map).to_py() == {"title": "Title", "owner": "alice"}


def test_load_is_order_independent_and_idempotent() -> None:
    base = document.new_document("hello", {"title": "t"})
    doc = document.load([base])
    update = document.meta_update(doc, {"title": "renamed"})
    assert update is not None
    for parts in ([base, update], [update, base], [base, update, update, base]):
        loaded = document.load(parts)
        assert document.markdown_of(loaded) == "hello"
        assert document.meta_of(loaded)["title"] == "renamed"


def test_meta_update_is_an_edit_not_a_rebuild() -> None:
    base = document.new_document("x" * 1000, {"title": "t"})
    client = Doc()
    client.apply_update(base)
    server = document.load([base])
    update = document.meta_update(server, {"title": "new"})
    assert update is not None and len(update) < 100  # incremental, does not carry the content
    client.apply_update(update)
    assert str(client.get("content", type=Text)) == "x" * 1000  # nothing duplicated
    assert document.meta_update(server, {"title": "new"}) is None  # no-op change, no update


def test_load_survives_updates_in_any_order() -> None:
    """Stored updates come back in key (hash) order; pycrdt applying them one by one out of causal
    order loses content, so load() must merge them first."""
    import random

    rng = random.Random(3)
    writer = Doc()
    text = writer.get("content", type=Text)
    updates = []
    for _ in range(400):
        before = writer.get_state()
        text.insert(rng.randint(0, len(text)), rng.choice("abc"))
        updates.append(writer.get_update(before))
    rng.shuffle(updates)
    assert document.markdown_of(document.load(updates)) == str(text)


def test_content_update_turns_the_text_into_the_target_and_replicas_agree() -> None:
    """Random documents with multi-byte characters (pycrdt 0.14's Text counts UTF-8 bytes)."""
    import random

    rng = random.Random(7)
    for _ in range(300):
        pieces = ["alpha", "## Head\n", "\n", "gamma ", "é", "🙂", "x"]
        start = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        target = list(start)
        for _ in range(rng.randint(0, 8)):
            if rng.random() < 0.4 and target:
                del target[rng.randrange(len(target))]
            else:
                target.insert(rng.randint(0, len(target)), rng.choice(["q", "\n", "## New\n", "🙂", "ü"]))
        base = document.new_document(start, {})
        doc = document.load([base])
        update = document.content_update(doc, "".join(target))
        assert str(doc.get(document.CONTENT, type=Text)) == "".join(target)
        replica = document.load([base])
        if update is not None:
            replica.apply_update(update)
        assert str(replica.get(document.CONTENT, type=Text)) == "".join(target)
        assert (update is None) == (start == "".join(target))


def test_content_update_keeps_the_text_that_did_not_change() -> None:
    doc = document.load([document.new_document("# T\n\nkeep this line\n\nold ending\n", {})])
    text = doc.get(document.CONTENT, type=Text)
    update = document.content_update(doc, "# T\n\nkeep this line\n\nnew ending\n")
    assert update is not None and str(text).endswith("new ending\n")
    # Only the changed run was replaced: the update is small, not the whole document again.
    assert len(update) < len(document.new_document("# T\n\nkeep this line\n\nnew ending\n", {}))
