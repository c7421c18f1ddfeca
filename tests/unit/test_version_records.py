"""Version records (prdtool.versions.records) against moto in-process: head, outbox, paging, races."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from moto import mock_aws

from prdtool.aws import reset_clients
from prdtool.errors import NotFound
from prdtool.settings import reset_settings_cache
from prdtool.storage import rebind_models
from prdtool.versions import records
from prdtool.versions.records import Head, HeadMoved, Version, VersionItem

PRD = "01jd0000000000000000000001"


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch, no_network: None) -> Iterator[None]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("VERSIONS_TABLE", "versions-unit")
    from scripts.localstack.moto_main import make_dynamodb_writes_atomic

    make_dynamodb_writes_atomic()  # moto's in-process writes are not atomic across threads; DynamoDB's are
    with mock_aws():
        reset_settings_cache()
        reset_clients()
        rebind_models()
        VersionItem.create_table(billing_mode="PAY_PER_REQUEST")
        yield
    reset_settings_cache()
    reset_clients()
    rebind_models()


def version(number: str, *, parent: str | None = None, kind: str = "minor") -> Version:
    return Version(PRD, number, kind, f"summary of {number}", (f"detail of {number}",), ("alice", "bob"),
                   records.now_ms(), "alice", None, parent, f"versions/{PRD}/{number}.md", records.PENDING)


def test_a_version_begins_pending_moves_the_head_and_finishes_with_its_commit(table: None) -> None:
    assert records.head(PRD) == Head(None, None, None, 0, frozenset())
    records.note_editors(PRD, ["alice"])
    records.note_editors(PRD, ["bob", "alice"])
    start = records.head(PRD)
    assert start.editors_since == {"alice", "bob"} and start.version is None

    records.begin(version("1.0.0"), start)
    moved = records.head(PRD)
    assert (moved.version, moved.commit, moved.counter, moved.editors_since) == ("1.0.0", None, 1, frozenset())
    assert [v.version for v in records.pending(PRD)] == ["1.0.0"]
    assert records.get(PRD, "v1.0.0").state == records.PENDING

    records.finish(PRD, "1.0.0", "c0ffee")
    assert records.head(PRD).commit == "c0ffee"
    done = records.get(PRD, "1.0.0")
    assert (done.state, done.commit, done.authors) == (records.COMMITTED, "c0ffee", ("alice", "bob"))
    assert records.pending(PRD) == []
    assert done.to_json()["tag"] == "v1.0.0"


def test_only_one_of_two_cutters_from_the_same_head_wins(table: None) -> None:
    records.begin(version("1.0.0"), records.head(PRD))
    seen = records.head(PRD)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def cut(number: str) -> None:
        barrier.wait()
        try:
            records.begin(version(number), seen)
            outcomes.append(f"won {number}")
        except HeadMoved:
            outcomes.append(f"lost {number}")

    threads = [threading.Thread(target=cut, args=(n,)) for n in ("1.1.0", "2.0.0")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.split()[0] for o in outcomes) == ["lost", "won"]
    winner = next(o.split()[1] for o in outcomes if o.startswith("won"))
    assert records.head(PRD).version == winner
    loser = "2.0.0" if winner == "1.1.0" else "1.1.0"
    with pytest.raises(NotFound):
        records.get(PRD, loser)  # nothing of the loser was written


def test_the_same_version_number_cannot_be_cut_twice(table: None) -> None:
    records.begin(version("1.0.0"), records.head(PRD))
    stale = replace(records.head(PRD))
    with pytest.raises(HeadMoved):
        records.begin(version("1.0.0"), stale)  # the head matches, the version item exists


def test_a_finish_for_a_version_that_is_no_longer_the_head_leaves_the_head_alone(table: None) -> None:
    records.begin(version("1.0.0"), records.head(PRD))
    records.begin(version("1.1.0"), records.head(PRD))
    assert records.head(PRD).pending == {"1.0.0", "1.1.0"}
    records.finish(PRD, "1.0.0", "aaa")
    assert records.head(PRD).version == "1.1.0" and records.head(PRD).commit is None
    assert records.get(PRD, "1.0.0").commit == "aaa"
    assert [v.version for v in records.pending(PRD)] == ["1.1.0"]  # finishing unlists it even so


def test_versions_page_newest_first_in_numeric_order(table: None) -> None:
    numbers = ["1.0.0", "1.1.0", "1.2.0", "1.10.0", "2.0.0", "2.0.1", "10.0.0"]
    for number in numbers:
        records.begin(version(number), records.head(PRD))
    first, cursor = records.page(PRD, limit=3)
    assert [v.version for v in first] == ["10.0.0", "2.0.1", "2.0.0"] and cursor == "2.0.0"
    second, cursor = records.page(PRD, limit=3, before=cursor)
    assert [v.version for v in second] == ["1.10.0", "1.2.0", "1.1.0"] and cursor == "1.1.0"
    last, cursor = records.page(PRD, limit=3, before=cursor)
    assert [v.version for v in last] == ["1.0.0"] and cursor is None


@pytest.mark.parametrize("bad", ["9.9.9", "latest", "v1", "1.0.0' OR '1'='1"])
def test_an_unknown_or_malformed_version_is_not_found(table: None, bad: str) -> None:
    records.begin(version("1.0.0"), records.head(PRD))
    with pytest.raises(NotFound) as missing:
        records.get(PRD, bad)
    assert missing.value.code == "version_not_found"


def test_version_keys_sort_numerically() -> None:
    keys: list[Any] = [records.version_sk(v) for v in ("1.2.0", "1.10.0", "1.9.9", "v2.0.0")]
    assert sorted(keys) == [keys[0], keys[2], keys[1], keys[3]]  # 1.2.0 < 1.9.9 < 1.10.0 < 2.0.0
