"""Cutting versions (prdtool.versions.service) against moto in-process: quiet periods, significance,
races between cutters, and a cutter that dies half-way."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.s3.responses import S3Response
from pycrdt import Doc, Text

from prdtool.aws import client, reset_clients
from prdtool.collab import document, store
from prdtool.prds.models import PrdModel
from prdtool.settings import get_settings, reset_settings_cache
from prdtool.storage import rebind_models
from prdtool.versions import gitstore, records, service
from prdtool.versions.records import VersionItem
from scripts.localstack.moto_main import s3_object_patches

PRD = "01jd0000000000000000000002"
BUCKET = "versions-unit-bucket"
START = "# Checkout\n\n## Goals\n\nCut abandonment by a fifth for returning customers on mobile.\n"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, no_network: None) -> Iterator[None]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in {"VERSIONS_TABLE": "v-unit", "DOCS_TABLE": "d-unit", "PRDS_TABLE": "p-unit",
                        "DOCUMENTS_BUCKET": BUCKET, "WEBSOCKET_CALLBACK_URL": "",
                        "EVENT_BUS_NAME": "v-unit-bus"}.items():
        monkeypatch.setenv(name, value)
    # In S3 a conditional put is atomic and a read sees an object whole or not at all (never one being
    # replaced or deleted); moto 5.2.5 does neither (scripts/localstack/moto_main.py).
    for name, method in s3_object_patches(S3Response).items():
        monkeypatch.setattr(S3Response, name, method)
    with mock_aws():
        reset_settings_cache()
        reset_clients()
        rebind_models()
        for model in (VersionItem, store.DocItem, PrdModel):
            model.create_table(billing_mode="PAY_PER_REQUEST")
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        boto3.client("events", region_name="us-east-1").create_event_bus(Name="v-unit-bus")
        PrdModel(id=PRD, title="Checkout", owner="alice", created_at=1, created_by="alice", updated_at=1,
                 updated_by="alice").save()
        store.create(PRD, document.new_document(START, {"title": "Checkout"}), origin="alice")
        yield
    reset_settings_cache()
    reset_clients()
    rebind_models()


def edit(new_markdown: str, *, origin: str = "alice", compact: bool = True) -> None:
    """Replace the document's text with ``new_markdown`` as one Yjs update (as an editor would)."""
    doc: Doc[Any] = Doc()
    doc.apply_update(store.read(PRD).update_since(None))
    text = doc.get(document.CONTENT, type=Text)
    before = doc.get_state()
    with doc.transaction():
        del text[0 : len(text)]
        text.insert(0, new_markdown)
    store.append_update(PRD, doc.get_update(before), origin=origin)
    if compact:
        store.compact(PRD)


def repository() -> gitstore.S3Repo:
    return gitstore.open_repo(client("s3"), get_settings().documents_bucket, PRD)


def test_the_first_version_is_1_0_0_and_insignificant_changes_are_not_versions(aws: None) -> None:
    first = service.on_event("prd.created", {"prd_id": PRD, "actor": "alice"})
    assert first is not None and (first.version, first.kind, first.summary) == ("1.0.0", "initial", "Create 'Checkout'")
    edit(START + "   \n\n")  # trailing whitespace: renders the same
    assert service.on_event("prd.updated", {"prd_id": PRD, "editors": ["bob"]}) is None
    assert records.head(PRD).editors_since == {"bob"}  # counts toward the next version
    edit(START.replace("a fifth", "a quarter"), origin="carol")
    patch = service.on_event("prd.updated", {"prd_id": PRD, "editors": ["carol"]})
    assert patch is not None and (patch.version, patch.kind) == ("1.0.1", "patch")
    assert patch.authors == ("bob", "carol") and patch.summary == "Fix 'Goals' (+1 -1 words)"
    with repository() as repo:
        log = gitstore.history(repo)
        assert [c.message.decode().splitlines()[0] for c in log] == [patch.summary, "Create 'Checkout'"]
        assert gitstore.read_files(repo, log[0].id)["prd.md"].decode() == START.replace("a fifth", "a quarter")


def test_no_version_while_people_are_still_typing_unless_overdue(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    service.cut(PRD, actor="alice")
    edit(START + "\n## Risks\n\nThrottling.\n")
    edit(START + "\n## Risks\n\nThrottling by the provider.\n", compact=False)  # stored after the compaction
    assert service.on_event("prd.updated", {"prd_id": PRD, "editors": ["alice"]}) is None
    monkeypatch.setenv("VERSION_MAX_BATCH_SECONDS", "0")
    reset_settings_cache()
    overdue = service.on_event("prd.updated", {"prd_id": PRD, "editors": ["alice"]})
    assert overdue is not None and overdue.version == "2.0.0"  # the pending update is in it
    assert read_version_markdown(overdue.version).endswith("Throttling by the provider.\n")


def test_while_people_type_the_quiet_check_reads_one_key_not_the_document(aws: None,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Asked after every compaction (~every 5 s while people type): the answer "still typing" must not
    # cost reading and rendering the whole document.
    service.cut(PRD, actor="alice")
    assert not store.has_pending_updates(PRD)
    edit(START + "\n## Risks\n\nThrottling.\n")
    for word in ("by", "the", "provider"):
        edit(START + f"\n## Risks\n\nThrottling {word}.\n", compact=False)
    assert store.has_pending_updates(PRD) and store.pending_updates(PRD) == 3
    reads: list[str] = []
    real_read = store.read
    monkeypatch.setattr(store, "read", lambda prd_id, **kw: reads.append(prd_id) or real_read(prd_id, **kw))
    assert service.on_event("prd.updated", {"prd_id": PRD, "editors": ["alice"]}) is None
    assert reads == []
    store.compact(PRD)  # quiet now: the document is read and the change versioned
    assert not store.has_pending_updates(PRD)
    reads.clear()
    quiet = service.on_event("prd.updated", {"prd_id": PRD, "editors": ["alice"]})
    assert quiet is not None and quiet.version == "2.0.0" and reads == [PRD]


def read_version_markdown(version: str) -> str:
    return service.read_markdown(service.markdown_key(PRD, version))


def test_two_cutters_at_once_make_one_version_each_change_and_a_linear_history(aws: None) -> None:
    service.cut(PRD, actor="alice")
    edit(START + "\n## Risks\n\nThrottling.\n")
    barrier = threading.Barrier(2)
    made: list[Any] = []

    def cutter() -> None:
        barrier.wait()
        made.append(service.cut(PRD, actor="alice"))

    threads = [threading.Thread(target=cutter) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(v.version for v in made if v is not None) == ["2.0.0"]  # the loser found nothing new
    with repository() as repo:
        assert [c.message.decode().splitlines()[0] for c in gitstore.history(repo)] == [
            "Add section 'Risks'", "Create 'Checkout'"]


def test_a_cutter_that_dies_after_the_record_is_finished_by_the_next(aws: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    service.cut(PRD, actor="alice")
    edit(START.replace("a fifth", "a third"))

    def die(*_: Any, **__: Any) -> Any:
        raise SystemExit("killed between the record and the commit")

    with monkeypatch.context() as patched:
        patched.setattr(gitstore, "commit_files", die)
        with pytest.raises(SystemExit):
            service.cut(PRD, actor="bob")
    assert [v.version for v in records.pending(PRD)] == ["1.0.1"]
    edit(START.replace("a fifth", "a third") + "\n## Risks\n\nThrottling.\n")
    announced: list[str] = []
    monkeypatch.setattr(service, "_announce", lambda version: announced.append(version.version))
    later = service.cut(PRD, actor="alice")
    assert announced == ["1.0.1", "2.0.0"]  # the dead cutter's version is announced by the one finishing it
    assert later is not None and later.version == "2.0.0"
    assert records.pending(PRD) == []
    with repository() as repo:
        tags = sorted(name.decode() for name in repo.refs.as_dict(b"refs/tags"))
        assert tags == ["v1.0.0", "v1.0.1", "v2.0.0"]
        assert len(gitstore.history(repo)) == 3
    assert records.get(PRD, "1.0.1").commit is not None


def test_a_version_saved_by_hand_is_cut_even_without_changes_and_keeps_its_name(aws: None) -> None:
    service.cut(PRD, actor="alice")
    named = service.cut(PRD, actor="bob", name="Review draft", message="Before the design review", by_hand=True)
    assert named is not None and (named.version, named.name) == ("1.0.1", "Review draft")
    assert named.summary == "Review draft: No change since the last version"
    with repository() as repo:
        changelog = gitstore.read_files(repo, gitstore.history(repo)[0].id)["CHANGELOG.md"].decode()
    assert changelog.startswith("# Changelog\n\n## [1.0.1] - ")
    assert "Before the design review" in changelog and "## [1.0.0]" in changelog


def test_versions_beyond_the_hot_count_move_to_the_archive_and_still_read(aws: None,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from prdtool.versions import maintenance

    monkeypatch.setenv("VERSION_HOT_COUNT", "3")
    reset_settings_cache()
    made = [service.cut(PRD, actor="alice")]
    for n in range(1, 6):
        edit(START + f"\n## Risk {n}\n\nThrottling, case {n}.\n")
        made.append(service.cut(PRD, actor="bob"))
    numbers = [v.version for v in made if v is not None]
    assert len(numbers) == 6
    texts = {number: read_version_markdown(number) for number in numbers}
    details = {number: records.get(PRD, number).details for number in numbers}

    assert service.on_event("prd.version.created", {"prd_id": PRD, "version": numbers[-1]}) is None
    s3 = client("s3")
    for number in numbers[:3]:
        record = records.get(PRD, number)
        assert record.archived_at is not None and maintenance.is_archive_key(record.markdown_key)
        assert s3.head_object(Bucket=BUCKET, Key=record.markdown_key)["StorageClass"] == "GLACIER_IR"
        with pytest.raises(s3.exceptions.ClientError):
            s3.head_object(Bucket=BUCKET, Key=service.markdown_key(PRD, number))  # left S3 Standard
        assert record.details == () and record.to_json()["archived"] is True
        assert service.read_markdown(record.markdown_key) == texts[number]
        assert maintenance.read_archive(record.markdown_key)["details"] == list(details[number])
    for number in numbers[3:]:
        assert records.get(PRD, number).archived_at is None and read_version_markdown(number) == texts[number]
    head = records.head(PRD)
    assert (head.archived_count, head.archived_through) == (3, records.version_sk(numbers[2]))
    assert maintenance.archive(PRD) == 0  # nothing more to move; running again changes nothing

    with repository() as repo:  # git keeps every version whole
        log = gitstore.history(repo)
        assert len(log) == 6
        assert gitstore.read_files(repo, log[-1].id)["prd.md"].decode() == texts[numbers[0]]

    # A restore of an archived version reads the archive, and the next version is cut as usual.
    edit(texts[numbers[0]])
    restored = service.cut(PRD, actor="alice", restored_from=numbers[0], by_hand=True)
    assert restored is not None and restored.summary.startswith(f"Restore v{numbers[0]}")
    assert read_version_markdown(restored.version) == texts[numbers[0]]


def test_an_archival_that_died_half_way_is_finished_by_the_next(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from prdtool.versions import maintenance

    service.cut(PRD, actor="alice")
    for n in range(1, 4):
        edit(START + f"\n## Risk {n}\n\nThrottling, case {n}.\n")
        service.cut(PRD, actor="bob")
    real = records.mark_archived
    calls: list[str] = []

    def dies_on_the_second(prd_id: str, version: str, **kw: Any) -> bool:
        calls.append(version)
        if len(calls) == 2:
            raise SystemExit("killed between the archive and the record")
        return real(prd_id, version, **kw)

    with monkeypatch.context() as patched:
        patched.setattr(records, "mark_archived", dies_on_the_second)
        with pytest.raises(SystemExit):
            maintenance.archive(PRD, keep=1)
    assert records.head(PRD).archived_count == 0  # the head moves only once a run finished
    assert maintenance.archive(PRD, keep=1) == 3
    for number in ("1.0.0", "2.0.0", "3.0.0"):
        record = records.get(PRD, number)
        assert maintenance.is_archive_key(record.markdown_key) and service.read_markdown(record.markdown_key)
    assert records.get(PRD, "4.0.0").archived_at is None


def test_two_archivers_at_once_move_each_version_once_and_both_finish(aws: None) -> None:
    from prdtool.versions import maintenance

    service.cut(PRD, actor="alice")
    for n in range(1, 7):
        edit(START + f"\n## Risk {n}\n\nThrottling, case {n}.\n")
        service.cut(PRD, actor="bob")
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def archiver() -> None:
        barrier.wait()
        try:
            maintenance.archive(PRD, keep=2)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=archiver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    head = records.head(PRD)
    assert head.archived_count == 5
    for version in records.page(PRD, limit=10)[0][2:]:
        assert version.archived_at is not None and service.read_markdown(version.markdown_key)
