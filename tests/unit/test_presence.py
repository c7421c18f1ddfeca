"""Awareness states as the server relays them (prdtool.collab.presence)."""

from __future__ import annotations

import re
from pathlib import Path

from prdtool.collab import limits, presence

ROOT = Path(__file__).resolve().parents[2]


def test_the_palette_is_the_web_clients() -> None:
    source = (ROOT / "web" / "src" / "presence.ts").read_text()
    colors = re.search(r"const COLORS = \[([^\]]*)\]", source)
    assert colors is not None
    assert tuple(re.findall(r"'(#[0-9a-f]{6})'", colors.group(1))) == presence.PALETTE


def test_identity_is_the_verified_username_with_a_palette_colour() -> None:
    me = presence.identity("alice")
    assert me["name"] == "alice" and me["color"] in presence.PALETTE and me["colorLight"] == me["color"] + "33"
    assert presence.identity("alice") == me  # stable
    # The web client's hash over code points, (h * 31 + cp) >>> 0: "ab" -> 97 * 31 + 98 = 3105.
    assert presence.identity("ab")["color"] == presence.PALETTE[3105 % len(presence.PALETTE)]


def test_bind_replaces_identity_and_keeps_only_allowed_fields() -> None:
    state = {"user": {"name": "alice", "color": "red;background:url(//evil)"}, "cursor": {"anchor": 1},
             "selection": [1, 2], "status": "typing", "onclick": "x", "__proto__": {}}
    bound = presence.bind(state, "bob")
    assert bound == {"cursor": {"anchor": 1}, "selection": [1, 2], "status": "typing",
                     "user": presence.identity("bob")}


def test_bind_drops_what_is_too_large_or_malformed() -> None:
    assert presence.bind(None, "bob") is None  # a client leaving stays a removal
    assert presence.bind("not an object", "bob") == {"user": presence.identity("bob")}
    assert presence.bind({"status": "x" * 65}, "bob") == {"user": presence.identity("bob")}
    huge = {"cursor": {"anchor": "x" * limits.MAX_AWARENESS_STATE_BYTES}}
    assert presence.bind(huge, "bob") == {"user": presence.identity("bob")}
