"""Identifiers and the other anchored patterns: a trailing newline is not part of a valid value.

Python's ``re`` lets ``$`` match just before a final ``"\\n"``, so ``re.match(r"^...$", value + "\\n")``
succeeds; every check of an id or a key must refuse that (and must do so before any lookup).
"""

from __future__ import annotations

import pytest

from prdtool.audit import chain
from prdtool.auth import apikeys
from prdtool.auth.principal import Principal
from prdtool.errors import NotFound, Unauthenticated
from prdtool.ids import is_ulid, ulid
from prdtool.prds import access

ULID = "01jd0000000000000000000000"
KEY = f"prdk_{ULID}_{'A' * 43}"


def test_is_ulid_accepts_ulids_and_nothing_around_them() -> None:
    assert is_ulid(ULID) and is_ulid(ulid())
    for bad in (ULID + "\n", ULID + "\r\n", "\n" + ULID, ULID + " ", ULID[:-1], ULID + "0", ULID.upper(),
                ULID[:-1] + "u", ""):
        assert not is_ulid(bad), repr(bad)


def test_an_api_key_with_a_trailing_newline_is_malformed_without_a_lookup(no_network: None) -> None:
    assert apikeys.KEY_RE.fullmatch(KEY)
    with pytest.raises(Unauthenticated) as refused:
        apikeys.authenticate(KEY + "\n")  # no_network: a lookup would raise something else
    assert refused.value.code == "invalid_api_key" and "malformed" in refused.value.message


def test_a_prd_id_with_a_trailing_newline_is_no_prd_without_a_lookup(no_network: None) -> None:
    caller = Principal("alice", "j", "o", 0)
    assert access.caller_role(ULID + "\n", caller) is None
    with pytest.raises(NotFound):
        access.load_prd(ULID + "\n")


def test_audit_object_keys_with_a_trailing_newline_are_not_audit_objects() -> None:
    key = chain.object_key("2026-11-25", 1)
    assert chain.parse_key(key) == ("2026-11-25", 1)
    assert chain.parse_key(key + "\n") is None
