"""The revocation generation: open connections learn of a revocation within the recheck interval,
and reading it costs a container one item per interval instead of one deny-list read per connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from prdtool.auth import apikeys, revocation
from prdtool.auth.principal import Principal
from prdtool.maintenance.gc import sweep_revocations
from tests.unit.moto_tables import moto_tables

RECHECK = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tables(monkeypatch: pytest.MonkeyPatch, no_network: None) -> Iterator[dict[str, int]]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("REVOCATIONS_TABLE", "unit-revocations")
    monkeypatch.setenv("API_KEYS_TABLE", "unit-api-keys")
    calls = {"entries": 0, "generation": 0}
    entries, generation = revocation.revoked_reason, revocation.current_generation

    def counted_entries(*args: Any) -> str | None:
        calls["entries"] += 1
        return entries(*args)

    def counted_generation() -> int:
        calls["generation"] += 1
        return generation()

    monkeypatch.setattr(revocation, "revoked_reason", counted_entries)
    monkeypatch.setattr(revocation, "current_generation", counted_generation)
    with moto_tables(revocation.RevocationModel, apikeys.ApiKeyModel):
        yield calls


def person(name: str = "alice", jti: str = "j1") -> Principal:
    now = int(time.time())
    return Principal(username=name, jti=jti, origin_jti=f"o-{jti}", expires_at=now + 3600, issued_at=now - 10)


def test_one_generation_read_per_interval_and_entries_only_when_it_moved(tables: dict[str, int]) -> None:
    clock = Clock()
    cache = revocation.RecheckCache(RECHECK, clock=clock)
    people = [person(f"user{i}", f"j{i}") for i in range(20)]
    assert all(cache.valid(p) for p in people)
    assert tables == {"entries": 20, "generation": 1}
    for _ in range(3):  # three more recheck intervals, every connection rechecking in each
        clock.now += RECHECK
        assert all(cache.valid(p) for p in people)
    assert tables == {"entries": 20, "generation": 4}, "nothing moved: no deny-list reads"

    revocation.revoke([revocation.jti_key("j3")], expires_at=int(time.time()) + 60, reason="logout")
    assert cache.valid(people[3]), "within the interval the container still trusts its last read"
    clock.now += RECHECK
    assert [p.jti for p in people if not cache.valid(p)] == ["j3"]
    assert tables == {"entries": 40, "generation": 5}, "the generation moved: every principal read again"
    assert not cache.valid(people[3]) and tables["entries"] == 40, "a refusal is cached too"


def test_the_answer_holds_no_longer_than_the_generation_it_rests_on(tables: dict[str, int]) -> None:
    clock = Clock()
    cache = revocation.RecheckCache(RECHECK, clock=clock)
    cache.valid(person())
    clock.now += 3
    assert cache.valid(person())
    assert cache.valid_until() == 1000.0 + RECHECK  # not 1003 + RECHECK: read at 1000


def test_user_wide_and_api_key_revocations_move_the_generation(tables: dict[str, int]) -> None:
    clock = Clock()
    cache = revocation.RecheckCache(RECHECK, clock=clock)
    owner = person("bob", "jb")
    created = apikeys.create(owner, "ci", [], None)
    key_principal = apikeys.authenticate(created.key)
    dave = person("dave", "jd")
    assert cache.valid(key_principal) and cache.valid(dave)

    apikeys.revoke(owner, created.record["id"])
    clock.now += RECHECK
    assert not cache.valid(key_principal)
    assert cache.valid(dave)

    revocation.revoke([revocation.user_key("dave")], expires_at=int(time.time()) + 60, reason="admin")
    clock.now += RECHECK
    assert not cache.valid(dave)
    assert revocation.current_generation() == 2


def test_a_verdict_is_read_again_after_its_max_age_even_if_nothing_moved(tables: dict[str, int]) -> None:
    """The bound for a revocation whose generation bump failed after its entries were written."""
    clock = Clock()
    cache = revocation.RecheckCache(RECHECK, max_age=60, clock=clock)
    alice = person()
    assert cache.valid(alice)
    revocation.RevocationModel(key=revocation.origin_key(alice.origin_jti), expires_at=int(time.time()) + 60,
                               reason="logout", revoked_at=int(time.time())).save()  # no bump
    clock.now += RECHECK
    assert cache.valid(alice)
    clock.now += 60
    assert not cache.valid(alice)


def test_the_generation_item_is_never_swept_nor_a_revocation(tables: dict[str, int]) -> None:
    revocation.bump_generation()
    revocation.bump_generation()
    assert sweep_revocations(int(time.time()) + 10 * 365 * 86400) == 0
    assert revocation.current_generation() == 2
    named = Principal(username="generation", jti="generation", origin_jti="generation",
                      expires_at=int(time.time()) + 60)
    assert revocation.revoked_reason(named.jti, named.origin_jti, named.username, 0) is None
