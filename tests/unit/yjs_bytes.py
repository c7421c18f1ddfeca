"""Hand-built Yjs V1 update bytes for tests of hostile input (what no Yjs library would write)."""

from __future__ import annotations

from prdtool.collab.protocol import write_var_string as var_string
from prdtool.collab.protocol import write_var_uint as var_uint

__all__ = ["any_content_update", "deep_any", "deep_any_object", "doc_content_update", "embed_update", "var_string",
           "var_uint"]


def deep_any(depth: int) -> bytes:
    """A lib0 ``Any`` value: ``depth`` arrays of one element nested in each other, around ``undefined``."""
    return b"\x75\x01" * depth + b"\x7f"


def deep_any_object(depth: int) -> bytes:
    """``depth`` objects of one key nested in each other."""
    return (b"\x76\x01" + var_string("k")) * depth + b"\x7f"


def _one_item(content_ref: int, body: bytes, root: str = "arr") -> bytes:
    """An update with one item of client 5, clock 0, in the root type ``root``, and no deletions."""
    return (var_uint(1) + var_uint(1) + var_uint(5) + var_uint(0) + bytes([content_ref]) + var_uint(1)
            + var_string(root) + body + var_uint(0))


def any_content_update(*values: bytes) -> bytes:
    """An update inserting ``values`` (encoded ``Any``) into the root array ``arr`` (ContentAny)."""
    return _one_item(8, var_uint(len(values)) + b"".join(values))


def doc_content_update(options: bytes) -> bytes:
    """An update inserting a subdocument whose options are ``options`` (ContentDoc)."""
    return _one_item(9, var_string("guid") + options)


def embed_update(json_text: str) -> bytes:
    """An update inserting an embed (ContentEmbed, JSON text) into the root text ``content``."""
    return _one_item(5, var_string(json_text), root="content")
