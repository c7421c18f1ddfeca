"""One git repository per PRD on S3, written with dulwich: no working tree, nothing on local disk.

Layout under a key prefix (``git/<prdId>/``)::

    refs.json                            every ref: {"refs": {name: sha | "ref: <name>"}, "peeled": {...}}
    objects/pack/pack-<checksum>.pack    objects live only in packs (no loose objects)
    objects/pack/pack-<checksum>.idx     its index; a pack exists for readers once both keys exist

Refs are one S3 object, replaced by compare-and-swap: a conditional ``PutObject`` (``IfMatch`` the
ETag that was read, ``IfNoneMatch='*'`` for the first write) that S3 refuses with 412 when another
writer got there first; the loser re-reads and re-decides.  One document rather than one object per
ref because (a) a clone advertises every ref and a PRD gains a tag per version, so reading them is
one GET instead of a LIST plus a GET per tag; (b) a commit moves ``refs/heads/main`` and creates its
tag in one atomic write, so a crash can never leave a version commit without its tag; (c) the peeled
value of each tag sits next to it, so advertising refs reads no tag object.  A write that conflicts
only on *other* refs (a tag added meanwhile) is retried internally; a conflict on the ref itself is
reported (:class:`RefConflict`).  S3's ETag of a single-part put is the MD5 of the body, so A→B→A
looks unchanged, which is harmless here: the new document is computed from exactly that content.

Objects: each commit writes one pack holding only the objects it creates (blobs, tree, commit, tag),
named by the pack's own checksum so equal names always mean equal bytes (two writers can never pair
one's ``.idx`` with the other's ``.pack``).  The ``.pack`` is uploaded before the ``.idx`` and a
listing ignores a pack that lacks either, so a half-uploaded pack is invisible.

Cost per commit is flat: a commit reads ``refs.json`` (1 GET), uploads the pack (2 PUTs) and swaps
``refs.json`` (1 PUT).  It never lists or reads packs: dulwich's stock ``add_pack`` re-lists the
bucket and downloads every pack to compare checksums on each add, which is what made one pack per
commit slow down with every commit.  Readers list packs once per store instance; after that a
lookup miss re-lists once (another writer may have added a pack), and a pack that vanished
(repacked away) is evicted and the listing refreshed.  :meth:`S3ObjectStore.repack` merges all
packs into one so that a cold reader's work (one ``.idx`` GET per pack it looks through) stays small;
:meth:`S3ObjectStore.repack_if_needed` merges the small ones past a threshold (geometrically, so
its work follows what was added, not the history's length), off the commit path.  Listings come newest first, where
the current version's objects are, but S3 reports LastModified in whole seconds: packs written in
the same second come in name order, so a reader may look through several of them.

Crash safety: the pack is written before the ref moves.  A process that dies in between leaves an
unreferenced pack: readers list it but never need it, the refs still name the previous commit (whose
objects are all in older packs), and the next commit builds on that commit as if nothing happened.
Repack keeps unreferenced objects (they cannot be told apart from those of a writer that has not
moved its ref yet), so a stray pack costs some bytes, never correctness.  The other ambiguous end, a
swap that S3 stored but whose answer was lost (botocore's retry then gets 412), is recognised on the
re-read: the refs already hold this very commit and tag (ids are content hashes), which counts as
done, so a commit is never made twice; repeating a whole call that landed returns the same commit.

Store, refs and repo instances cache state and are not thread-safe: use one per thread or request.
Serving: :func:`wsgi_app` gives a read-only smart-HTTP endpoint for stock ``git clone``/``fetch``
(this store has no ``add_thin_pack``, so push is not offered).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Self, TypeVar, cast

from botocore.exceptions import ClientError
from dulwich.config import ConfigFile, StackedConfig
from dulwich.errors import NoIndexPresent, ObjectFormatException
from dulwich.object_store import (
    BucketBasedObjectStore,
    GraphTraversalReachability,
    ObjectReachabilityProvider,
)
from dulwich.objects import (
    ZERO_SHA,
    Blob,
    Commit,
    ObjectID,
    RawObjectID,
    ShaFile,
    Tag,
    Tree,
    check_identity,
    sha_to_hex,
)
from dulwich.pack import (
    Pack,
    PackData,
    PackFileDisappeared,
    PackIndex,
    UnpackedObject,
    load_pack_index_file,
    write_pack_index,
    write_pack_objects,
)
from dulwich.refs import HEADREF, SYMREF, Ref, RefsContainer, SymrefLoop, check_ref_format
from dulwich.repo import BaseRepo

from ..errors import Conflict

if TYPE_CHECKING:
    from dulwich.index import Index
    from dulwich.object_format import ObjectFormat
    from dulwich.web import WSGIApplication

MAIN = Ref(b"refs/heads/main")
TAGS = b"refs/tags/"
REFS_KEY = "refs.json"
PACK_DIR = "objects/pack/"
FILE_MODE = 0o100644
_REFS_FORMAT = 1
_CAS_ATTEMPTS = 10  # conditional puts lost to writers that changed *other* refs before giving up
REPACK_THRESHOLD = 16  # packs a repository may gather before repack_if_needed merges them
_DELETE_BATCH = 1000  # keys per DeleteObjects call (the S3 limit)
# Refusals of a conditional put that mean "someone else wrote first": re-read and decide again.
_STALE_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_T = TypeVar("_T")


class RefConflict(Conflict):
    """A ref was not where the writer expected it: another writer moved it (or took the tag name).

    ``actual`` is what the ref holds now (None: absent), so the caller can rebuild on it and retry.
    """

    code = "ref_conflict"

    def __init__(self, ref: bytes, expected: bytes | None, actual: bytes | None, *, message: str | None = None) -> None:
        self.ref, self.expected, self.actual = ref, expected, actual
        text = message or (f"{ref.decode()} is at {_describe(actual)}, not {_describe(expected)}: "
                           "another writer got there first; rebuild on the current value and retry")
        super().__init__(text, details={"ref": ref.decode(), "expected": _describe(expected),
                                        "actual": _describe(actual)})


def _describe(value: bytes | None) -> str:
    return value.decode("ascii", "replace") if value else "nothing"


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


# --------------------------------------------------------------------------------------------------
# Objects


class S3ObjectStore(BucketBasedObjectStore):
    """Git objects in packs under ``<prefix>objects/pack/``, read into memory (never to disk).

    Follows dulwich's ``cloud/gcs.py`` but replaces the parts that cost a listing or a download per
    operation: the pack list is cached per instance (re-listed on a lookup miss or a vanished pack,
    never on every add), a new pack is uploaded without comparing it to every existing pack, and
    packs are opened lazily (listing downloads nothing; a pack's ``.idx`` is fetched when a lookup
    first asks it, its ``.pack`` when an object is read from it).  Listing order is newest first,
    which is where a reader of the current version finds its objects.
    """

    def __init__(self, client: Any, bucket: str, prefix: str, *, object_format: ObjectFormat | None = None) -> None:
        super().__init__(object_format=object_format)
        self.client = client
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        self._pack_prefix = f"{self.prefix}{PACK_DIR}"
        self._listed = False  # has this instance listed the packs at least once?
        self._pack_sizes: dict[str, int] = {}  # bytes of each listed pack's .pack, from the listing

    def __repr__(self) -> str:
        return f"{type(self).__name__}(s3://{self.bucket}/{self.prefix})"

    # -- the pack list -----------------------------------------------------------------------------

    def _list_pack_names(self) -> list[str]:
        """Complete packs (both keys present), newest first: one paginated LIST."""
        extensions: dict[str, set[str]] = {}
        modified: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._pack_prefix}
        while True:
            page = self.client.list_objects_v2(**request)
            for item in page.get("Contents", []):
                base, ext = posixpath.splitext(item["Key"][len(self._pack_prefix):])
                if ext in (".pack", ".idx") and "/" not in base:
                    extensions.setdefault(base, set()).add(ext)
                    modified[base] = max(modified.get(base, item["LastModified"]), item["LastModified"])
                    if ext == ".pack":
                        sizes[base] = int(item.get("Size", 0))
            if not page.get("IsTruncated"):
                break
            request["ContinuationToken"] = page["NextContinuationToken"]
        complete = [base for base, found in extensions.items() if found == {".pack", ".idx"}]
        self._pack_sizes = {base: sizes.get(base, 0) for base in complete}
        return sorted(complete, key=lambda base: (modified[base], base), reverse=True)

    def _iter_pack_names(self) -> Iterator[str]:
        return iter(self._list_pack_names())

    def _update_pack_cache(self) -> list[Pack]:
        """Re-list the packs: open new ones lazily, drop vanished ones; returns the new packs.

        dulwich calls this to "rescan" (after a lookup miss or a vanished pack); this class is what
        decides that nothing else re-lists.  A pack this instance uploaded is always in the listing
        (S3 lists strongly consistently after a PUT), so dropping what is not listed loses nothing.
        """
        names = self._list_pack_names()
        fresh: dict[str, Pack] = {}
        new: list[Pack] = []
        for name in names:
            pack = self._pack_cache.get(name)
            if pack is None:
                pack = self._get_pack(name)
                new.append(pack)
            fresh[name] = pack
        for name, pack in self._pack_cache.items():
            if name not in fresh:
                pack.close()
        self._pack_cache = fresh
        self._pack_access_order = [name for name in self._pack_access_order if name in fresh]
        self._listed = True
        return new

    @property
    def packs(self) -> list[Pack]:
        """The packs as last listed (listed on first use; :meth:`refresh` re-lists)."""
        if not self._listed:
            self._update_pack_cache()
        return list(self._pack_cache.values())

    def refresh(self) -> None:
        """List the packs again (packs already opened and still listed stay in memory)."""
        self._update_pack_cache()

    def get_reachability_provider(self, prefer_bitmaps: bool = True) -> ObjectReachabilityProvider:
        """Graph traversal: there are no bitmaps on S3, and dulwich's probe for one would download
        every pack and look for a ``.bitmap`` file on local disk."""
        return GraphTraversalReachability(self)

    # -- reading packs (lazily, into memory) ------------------------------------------------------

    def _get_pack(self, name: str) -> Pack:
        pack = Pack(f"s3://{self.bucket}/{self._pack_prefix}{name}", object_format=self.object_format)
        # Pack.index/.data turn FileNotFoundError from these into PackFileDisappeared(pack), which
        # dulwich's lookups answer by evicting the pack and re-listing.
        pack._idx_load = partial(self._load_pack_index, name)
        pack._data_load = partial(self._load_pack_data, name)
        return pack

    def _download(self, key: str) -> bytes:
        try:
            return cast(bytes, self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise FileNotFoundError(key) from exc
            raise

    def _load_pack_index(self, name: str) -> PackIndex:
        raw = self._download(f"{self._pack_prefix}{name}.idx")
        return load_pack_index_file(f"{name}.idx", BytesIO(raw), self.object_format)

    def _load_pack_data(self, name: str) -> PackData:
        raw = self._download(f"{self._pack_prefix}{name}.pack")
        return PackData(f"{name}.pack", self.object_format, file=BytesIO(raw))

    def _hex(self, sha: ObjectID | RawObjectID) -> ObjectID:
        return ObjectID(sha) if len(sha) == self.object_format.hex_length else sha_to_hex(RawObjectID(sha))

    def _from_packs(self, todo: set[ObjectID], fetch: Callable[[Pack, set[ObjectID]], Iterator[tuple[_T, ObjectID]]],
                    ) -> Iterator[_T]:
        """Yield what the packs hold of ``todo``, removing each from it; re-list once if some are left.

        Packs whose index lacks every wanted object are skipped before their data is downloaded.
        """
        if not self._listed:
            self._update_pack_cache()
        for attempt in range(2):
            for pack in list(self._pack_cache.values()):
                if not todo:
                    return
                try:
                    wanted = {sha for sha in todo if sha in pack}
                    for item, sha in fetch(pack, wanted) if wanted else ():
                        yield item
                        todo.discard(sha)
                except PackFileDisappeared as exc:
                    self._evict_pack(exc.obj)
            if not todo or attempt or not self._update_pack_cache():
                return

    def iterobjects_subset(self, shas: Iterable[ObjectID], *, allow_missing: bool = False) -> Iterator[ShaFile]:
        """Objects by id from the packs (the stock version re-lists the packs on every call)."""
        todo = {self._hex(sha) for sha in shas}
        yield from self._from_packs(
            todo, lambda pack, wanted: ((obj, obj.id) for obj in pack.iterobjects_subset(wanted, allow_missing=True)))
        if todo and not allow_missing:
            raise KeyError(next(iter(todo)))

    def iter_unpacked_subset(self, shas: Iterable[ObjectID | RawObjectID], *, include_comp: bool = False,
                             allow_missing: bool = False, convert_ofs_delta: bool = True) -> Iterator[UnpackedObject]:
        """Raw pack records by id (what upload-pack streams); same caching as :meth:`iterobjects_subset`."""
        todo = {self._hex(sha) for sha in shas}

        def fetch(pack: Pack, wanted: set[ObjectID]) -> Iterator[tuple[UnpackedObject, ObjectID]]:
            for unpacked in pack.iter_unpacked_subset(wanted, include_comp=include_comp, allow_missing=True,
                                                      convert_ofs_delta=convert_ofs_delta):
                yield unpacked, sha_to_hex(RawObjectID(unpacked.sha()))

        yield from self._from_packs(todo, fetch)
        if todo and not allow_missing:
            raise KeyError(next(iter(todo)))

    # -- writing packs ----------------------------------------------------------------------------

    def add_pack(self) -> tuple[BinaryIO, Callable[[], None], Callable[[], None]]:
        """A buffer to write a pack into, a function that publishes it, and one that drops it.

        Unlike the stock bucket store this never compares the new pack with every existing one
        (a listing plus a download of each pack, per add): a duplicate pack is harmless and its
        name, the pack's checksum, makes re-uploading the same bytes idempotent.
        """
        buffer = BytesIO()

        def commit() -> Pack | None:
            return self._publish(buffer.getvalue()) if buffer.tell() else None

        return buffer, commit, buffer.close  # type: ignore[return-value]  # dulwich's own signature

    def _publish(self, pack_bytes: bytes) -> Pack:
        data = PackData("incoming.pack", self.object_format, file=BytesIO(pack_bytes))
        checksum = data.get_stored_checksum()
        name = f"pack-{checksum.hex()}"
        index_file = BytesIO()
        write_pack_index(index_file, data.sorted_entries(), checksum, version=self.pack_index_version)
        index_bytes = index_file.getvalue()
        self._upload_pack(name, BytesIO(pack_bytes), BytesIO(index_bytes))
        pack = Pack.from_objects(data, load_pack_index_file(f"{name}.idx", BytesIO(index_bytes), self.object_format))
        # Newest first, like a listing; already in memory, so this instance never downloads it.
        previous = self._pack_cache.pop(name, None)
        if previous is not None:
            previous.close()
        self._pack_cache = {name: pack, **self._pack_cache}
        self._pack_sizes[name] = len(pack_bytes)
        self._mark_pack_used(name)
        return pack

    def _upload_pack(self, basename: str, pack_file: BinaryIO, index_file: BinaryIO) -> None:
        # .pack first: the .idx is what makes a listing count the pack, so it goes last.
        self.client.put_object(Bucket=self.bucket, Key=f"{self._pack_prefix}{basename}.pack", Body=pack_file.read())
        self.client.put_object(Bucket=self.bucket, Key=f"{self._pack_prefix}{basename}.idx", Body=index_file.read())

    def _remove_pack_by_name(self, name: str) -> None:
        self._delete_packs([name])

    def _delete_packs(self, names: Sequence[str]) -> None:
        # .idx before .pack within a batch is not guaranteed, and need not be: a listing that sees
        # only one of the two ignores the pack.
        keys = [f"{self._pack_prefix}{name}{ext}" for name in names for ext in (".idx", ".pack")]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start:start + _DELETE_BATCH]
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})
            if response.get("Errors"):
                raise RuntimeError(f"could not delete old packs: {response['Errors']}")

    def repack(self, exclude: Set[bytes] | None = None, progress: Callable[[str], None] | None = None,
               *, only: Sequence[str] | None = None) -> int:
        """Merge the listed packs (or ``only`` those named) into one; returns the number of objects
        in it (0: nothing to do).

        Order makes it safe with concurrent readers and writers, without locks:

        1. list the packs (fresh) and read each one to merge completely into memory;
        2. upload the merged pack (``.pack`` then ``.idx``): from now on a listing finds it;
        3. only then delete the packs read in step 1 (and nothing else).

        A reader that listed before step 3 and has already loaded a pack keeps reading it from
        memory.  One that has not gets NoSuchKey when it opens an old pack; dulwich turns that into
        ``PackFileDisappeared``, evicts the pack and re-lists, and the listing (strongly consistent)
        holds the merged pack, written in step 2 before anything was deleted.  A writer's pack that
        appears after step 1 is not deleted; one that appeared before it is merged, so a ref moved
        afterwards to its commit still finds it.  Two repacks at once: each deletes only packs it
        has merged into a pack it already uploaded; a pack that another repack deleted under this
        one is skipped (its objects are in that repack's pack).  Unreferenced objects are kept
        (no pruning): they may belong to a writer that has not moved its ref yet.

        The merged pack is deltified (as ``git repack -d``): each version of ``CHANGELOG.md`` and
        ``prd.md`` is stored as a delta against a neighbour, so a pack of many versions is about the
        size of a few (16 changelogs of 70 KB: 43 KB whole, 3 KB deltified).
        """
        excluded = exclude or set()
        self._update_pack_cache()
        chosen = [name for name in self._pack_cache if only is None or name in only]
        if len(chosen) < 2 and not excluded:
            return 0
        objects: dict[ObjectID, ShaFile] = {}
        merged: list[str] = []
        for name in chosen:
            pack = self._pack_cache[name]
            try:
                found = [obj for obj in pack.iterobjects() if obj.id not in excluded]
            except PackFileDisappeared as exc:
                self._evict_pack(exc.obj)
                continue
            for obj in found:
                objects.setdefault(obj.id, obj)
            merged.append(name)
        if not objects or (len(merged) < 2 and not excluded):
            return 0
        keep = self._write_deltified(objects).removesuffix(".pack")
        doomed = [name for name in merged if name != keep]
        self._delete_packs(doomed)
        for name in doomed:
            gone = self._pack_cache.pop(name, None)
            if gone is not None:
                gone.close()
        self._pack_access_order = [name for name in self._pack_access_order if name in self._pack_cache]
        return len(objects)

    def _write_deltified(self, objects: Mapping[ObjectID, ShaFile]) -> str:
        """Upload ``objects`` as one deltified pack; returns its name (``pack-<checksum>``)."""
        # Path hints group the versions of one file, which is what deltas are made between.
        paths: dict[ObjectID, bytes] = {}
        for obj in objects.values():
            if isinstance(obj, Tree):
                for entry in obj.iteritems():
                    paths.setdefault(entry.sha, entry.path)
        # Deterministic content: the same objects always give the same bytes, hence the same name.
        ordered = sorted(objects.values(), key=lambda obj: (obj.type_num, obj.id))
        buffer = BytesIO()
        write_pack_objects(buffer, [(obj, paths.get(obj.id)) for obj in ordered], deltify=True,
                           object_format=self.object_format)
        pack = self._publish(buffer.getvalue())
        return f"pack-{pack.data.get_stored_checksum().hex()}"

    def repack_if_needed(self, max_packs: int = REPACK_THRESHOLD) -> int:
        """Merge the small packs when more than ``max_packs`` are listed; returns what it merged
        (0: nothing to do).

        Geometric, as ``git repack --geometric=2``: the packs are ranked by size, and each pack at
        least twice the size of all smaller ones together stays; the rest are merged.  So the pack
        holding most of the history is rewritten only when the new ones add up to half of it, and a
        repack's work follows what was added since the last one, not the length of the history.
        Decided on a fresh listing (one LIST; sizes come with it).
        """
        self._update_pack_cache()
        if len(self._pack_cache) <= max_packs:
            return 0
        ranked = sorted(self._pack_cache, key=lambda name: self._pack_sizes.get(name, 0), reverse=True)
        sizes = [self._pack_sizes.get(name, 0) for name in ranked]
        split = 0
        while split < len(ranked) - 1 and sizes[split] >= 2 * sum(sizes[split + 1:]):
            split += 1
        small = ranked[split:]
        return self.repack(only=small) if len(small) >= 2 else 0


# --------------------------------------------------------------------------------------------------
# Refs


@dataclass(frozen=True)
class _RefsSnapshot:
    refs: dict[Ref, bytes]
    peeled: dict[Ref, ObjectID]
    etag: str | None  # None: there is no document yet, the first write creates it


@dataclass(frozen=True)
class RefUpdate:
    """One ref change inside :meth:`S3RefsContainer.apply`.

    ``expected`` is what the ref must hold for the change to happen; None means "must not exist"
    (unlike dulwich's ``set_if_equals``, where None means "unconditionally").  ``peeled`` is what
    the new value peels to (the commit a tag points at; the commit itself for a branch).
    """

    name: Ref
    new: ObjectID
    expected: ObjectID | None
    peeled: ObjectID | None = None


_Mutation = Callable[[dict[Ref, bytes], dict[Ref, ObjectID]], RefConflict | None]


def _resolve(refs: Mapping[Ref, bytes], name: Ref) -> Ref:
    """The ref a name ends at after following symbolic refs (which need not exist)."""
    for _ in range(6):
        value = refs.get(name)
        if value is None or not value.startswith(SYMREF):
            return name
        name = Ref(value[len(SYMREF):])
    raise SymrefLoop(name, 6)


class _Stale(Exception):
    """The conditional put lost: the document changed since it was read."""


class S3RefsContainer(RefsContainer):
    """All refs of a repository in one S3 JSON document, updated by compare-and-swap.

    Reads come from a snapshot taken on first use (one GET; :meth:`refresh` takes a new one), so a
    clone sees one consistent set of refs.  Every write re-decides on a fresh snapshot when the
    cached one disagrees, so a stale cache can cost a retry but never a wrong answer.  Symbolic
    refs are followed on writes like dulwich's disk container (``HEAD`` moves ``refs/heads/main``).
    """

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        super().__init__()
        self.client = client
        self.bucket = bucket
        self.key = f"{_normalise_prefix(prefix)}{REFS_KEY}"
        self._snapshot: _RefsSnapshot | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(s3://{self.bucket}/{self.key})"

    # -- the document -----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the document again (one GET)."""
        self._snapshot = self._read()

    def _read(self) -> _RefsSnapshot:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return _RefsSnapshot({HEADREF: SYMREF + MAIN}, {}, None)
            raise
        document = json.loads(response["Body"].read())
        if document.get("format") != _REFS_FORMAT:
            raise ValueError(f"{self.key}: unknown refs format {document.get('format')!r}")
        refs = {Ref(name.encode()): value.encode() for name, value in document["refs"].items()}
        peeled = {Ref(name.encode()): ObjectID(value.encode()) for name, value in document["peeled"].items()}
        return _RefsSnapshot(refs, peeled, response["ETag"])

    def _current(self) -> _RefsSnapshot:
        if self._snapshot is None:
            self._snapshot = self._read()
        return self._snapshot

    def _write(self, refs: Mapping[Ref, bytes], peeled: Mapping[Ref, ObjectID], etag: str | None) -> str:
        body = json.dumps({
            "format": _REFS_FORMAT,
            "refs": {name.decode(): value.decode() for name, value in sorted(refs.items())},
            "peeled": {name.decode(): value.decode() for name, value in sorted(peeled.items())},
        }, separators=(",", ":")).encode()
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            response = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                                              ContentType="application/json", **condition)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if _error_code(exc) in _STALE_CODES or status in (409, 412):
                raise _Stale from exc
            raise
        return cast(str, response["ETag"])

    def _update(self, mutate: _Mutation) -> None:
        """Apply ``mutate`` to a copy of the refs and store it by compare-and-swap.

        ``mutate`` returns a :class:`RefConflict` to refuse (nothing is written).  A refusal or a
        lost put based on a cached snapshot is decided again on a fresh one; a refusal on a fresh
        snapshot is raised.  Raises :class:`RefConflict` as well after ``_CAS_ATTEMPTS`` lost puts.
        """
        fresh = self._snapshot is None
        snapshot = self._current()
        for _ in range(_CAS_ATTEMPTS):
            refs, peeled = dict(snapshot.refs), dict(snapshot.peeled)
            conflict = mutate(refs, peeled)
            if conflict is None and refs == snapshot.refs and peeled == snapshot.peeled:
                return  # nothing to change
            if conflict is None:
                try:
                    etag = self._write(refs, peeled, snapshot.etag)
                except _Stale:
                    pass
                else:
                    self._snapshot = _RefsSnapshot(refs, peeled, etag)
                    return
            elif fresh:
                raise conflict
            self.refresh()
            snapshot, fresh = self._current(), True
        raise RefConflict(self.key.encode(), None, None,
                          message=f"{self.key} kept changing under {_CAS_ATTEMPTS} attempts to update it; retry")

    def apply(self, updates: Sequence[RefUpdate]) -> None:
        """Change several refs in one atomic write, or none (raises :class:`RefConflict`).

        A ref that already holds its new value counts as done: when S3 stored a swap but its answer
        was lost, botocore's retry of the same conditional put gets 412, and the re-read shows this
        writer's own commit (ids are content hashes, so no one else can have written that value).
        """
        for update in updates:
            self._check_refname(update.name)
            self._check_ref_value(update.new)

        def mutate(refs: dict[Ref, bytes], peeled: dict[Ref, ObjectID]) -> RefConflict | None:
            for update in updates:
                name = _resolve(refs, update.name)
                current = refs.get(name)
                if current not in (update.expected, update.new):
                    return RefConflict(name, update.expected, current)
                refs[name] = update.new
                if update.peeled is None:
                    peeled.pop(name, None)
                else:
                    peeled[name] = update.peeled
            return None

        self._update(mutate)

    # -- dulwich's RefsContainer API ----------------------------------------------------------------

    def allkeys(self) -> set[Ref]:
        """Every ref name, ``HEAD`` included."""
        return set(self._current().refs)

    def read_loose_ref(self, name: Ref) -> bytes | None:
        """A ref's raw value (a sha or ``ref: <name>``); every ref here is "loose"."""
        return self._current().refs.get(name)

    def get_packed_refs(self) -> dict[Ref, ObjectID]:
        """Nothing: there is no packed-refs file besides the document."""
        return {}

    def get_peeled(self, name: Ref) -> ObjectID | None:
        """What a ref peels to, as recorded when it was written; None when unknown (dulwich then
        reads the object)."""
        snapshot = self._current()
        try:
            return snapshot.peeled.get(_resolve(snapshot.refs, name))
        except SymrefLoop:
            return None

    def set_symbolic_ref(self, name: Ref, other: Ref, committer: bytes | None = None, timestamp: int | None = None,
                         timezone: int | None = None, message: bytes | None = None) -> None:
        """Make ``name`` point at ``other``."""
        self._check_refname(name)
        self._check_refname(other)

        def mutate(refs: dict[Ref, bytes], peeled: dict[Ref, ObjectID]) -> RefConflict | None:
            refs[name] = SYMREF + other
            peeled.pop(name, None)
            return None

        self._update(mutate)

    def set_if_equals(self, name: Ref, old_ref: ObjectID | None, new_ref: ObjectID, committer: bytes | None = None,
                      timestamp: int | None = None, timezone: int | None = None, message: bytes | None = None) -> bool:
        """Compare-and-swap (following symrefs); ``old_ref`` None sets unconditionally."""
        self._check_refname(name)
        self._check_ref_value(new_ref)

        def mutate(refs: dict[Ref, bytes], peeled: dict[Ref, ObjectID]) -> RefConflict | None:
            real = _resolve(refs, name)
            current = refs.get(real)
            if old_ref is not None and (current or ZERO_SHA) != old_ref:
                return RefConflict(real, old_ref, current)
            if current != new_ref:
                refs[real] = new_ref
                peeled.pop(real, None)
            return None

        return self._attempt(mutate)

    def add_if_new(self, name: Ref, ref: ObjectID, committer: bytes | None = None, timestamp: int | None = None,
                   timezone: int | None = None, message: bytes | None = None) -> bool:
        """Create a ref (following symrefs) only if it does not exist yet."""
        self._check_refname(name)
        self._check_ref_value(ref)

        def mutate(refs: dict[Ref, bytes], peeled: dict[Ref, ObjectID]) -> RefConflict | None:
            real = _resolve(refs, name)
            if real in refs:
                return RefConflict(real, None, refs[real])
            refs[real] = ref
            peeled.pop(real, None)
            return None

        return self._attempt(mutate)

    def remove_if_equals(self, name: Ref, old_ref: ObjectID | None, committer: bytes | None = None,
                         timestamp: int | None = None, timezone: int | None = None,
                         message: bytes | None = None) -> bool:
        """Compare-and-delete (not following symrefs); ``old_ref`` None deletes unconditionally."""

        def mutate(refs: dict[Ref, bytes], peeled: dict[Ref, ObjectID]) -> RefConflict | None:
            current = refs.get(name)
            if old_ref is not None and (current or ZERO_SHA) != old_ref:
                return RefConflict(name, old_ref, current)
            refs.pop(name, None)
            peeled.pop(name, None)
            return None

        return self._attempt(mutate)

    def pack_refs(self, all: bool = False) -> None:
        """Nothing to do: the refs are one document already."""

    def _attempt(self, mutate: _Mutation) -> bool:
        try:
            self._update(mutate)
        except RefConflict:
            return False
        return True


# --------------------------------------------------------------------------------------------------
# The repository


class S3Repo(BaseRepo):
    """A bare repository made of an :class:`S3ObjectStore` and an :class:`S3RefsContainer`.

    Enough of dulwich's ``BaseRepo`` for ``dulwich.server``/``dulwich.web`` to serve upload-pack
    (clone, fetch) and for dulwich's readers (walkers, ``repo[sha]``).  It has no control files
    (no config on disk, no shallow file, no hooks), and its configuration stack is the repository's
    own only: a server must not pick up ``~/.gitconfig`` of whatever machine it runs on.
    """

    object_store: S3ObjectStore
    refs: S3RefsContainer
    bare = True

    def __init__(self, object_store: S3ObjectStore, refs: S3RefsContainer) -> None:
        super().__init__(object_store, refs)
        self._config = ConfigFile()
        self._config.set((b"core",), b"repositoryformatversion", b"0")
        self._config.set((b"core",), b"bare", True)

    @classmethod
    def open(cls, client: Any, bucket: str, prefix: str) -> S3Repo:
        """The repository under ``s3://bucket/prefix`` (nothing is read until it is used)."""
        return cls(S3ObjectStore(client, bucket, prefix), S3RefsContainer(client, bucket, prefix))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(s3://{self.object_store.bucket}/{self.object_store.prefix})"

    def get_named_file(self, path: str) -> BinaryIO | None:
        """No control files (``shallow``, ``info/alternates``, ...) exist."""
        return None

    def _put_named_file(self, path: str, contents: bytes) -> None:
        raise NotImplementedError(f"{self!r} keeps no control files ({path})")

    def _del_named_file(self, path: str) -> None:
        raise NotImplementedError(f"{self!r} keeps no control files ({path})")

    def _determine_file_mode(self) -> bool:
        return False

    def open_index(self, config: Any = None) -> Index:
        """A bare repository has no index."""
        raise NoIndexPresent()

    def get_config(self) -> ConfigFile:
        """``core.bare = true``, format version 0 (SHA-1)."""
        return self._config

    def get_config_stack(self) -> StackedConfig:
        """The repository's configuration alone (no user or system files)."""
        return StackedConfig([self._config], writable=self._config)

    def get_description(self) -> bytes | None:
        """No description."""
        return None

    def set_description(self, description: bytes) -> None:
        """Descriptions are not stored."""
        raise NotImplementedError(f"{self!r} stores no description")

    def close(self) -> None:
        """Release the packs held in memory."""
        self.object_store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def repo_prefix(prd_id: str) -> str:
    """Where a PRD's repository lives in the bucket."""
    return f"git/{prd_id}/"


def open_repo(client: Any, bucket: str, prd_id: str) -> S3Repo:
    """The repository of one PRD."""
    return S3Repo.open(client, bucket, repo_prefix(prd_id))


def wsgi_app(repo: S3Repo) -> WSGIApplication:
    """A read-only smart-HTTP git endpoint (clone, fetch) serving ``repo`` at ``/``; push gets 403.

    ``dulwich.web.make_wsgi_chain`` with receive-pack taken out of the handlers (``handlers=`` can
    only add to dulwich's defaults).  Served by the stock chain, a push fails with a 500 instead
    (no ``add_thin_pack``), also before anything is written.
    """
    from dulwich.server import BackendRepo, DictBackend
    from dulwich.web import GunzipFilter, HTTPGitApplication, LimitedInputFilter

    repos: dict[str, BackendRepo] = {"/": repo}
    app = HTTPGitApplication(DictBackend(repos))
    app.handlers.pop(b"git-receive-pack", None)
    return LimitedInputFilter(GunzipFilter(app))


# --------------------------------------------------------------------------------------------------
# Versions: writing and reading commits


_FORBIDDEN_NAMES = frozenset({"", ".", "..", ".git"})
_TRAILER = re.compile(r"^[^\n<>]+ <[^\n<>]*>$")


def _file_name(name: str) -> bytes:
    if "/" in name or "\0" in name or "\\" in name or name.lower() in _FORBIDDEN_NAMES:
        raise ValueError(f"not a flat file name: {name!r}")
    return name.encode()


def _identity(value: str, what: str) -> bytes:
    raw = value.encode()
    try:
        check_identity(raw, f"{what} must look like 'Name <email>', got {value!r}")
    except ObjectFormatException as exc:
        raise ValueError(str(exc)) from None
    return raw


def with_co_authors(message: str, co_authors: Sequence[str], *, author: str) -> str:
    """``message`` ending in one ``Co-authored-by:`` trailer per co-author (the author and repeats
    left out), after a blank line, as GitHub and ``git interpret-trailers`` read them."""
    trailers: list[str] = []
    for person in co_authors:
        person = person.strip()
        if not _TRAILER.match(person):
            raise ValueError(f"co-author must look like 'Name <email>', got {person!r}")
        if person != author and person not in trailers:
            trailers.append(person)
    body = message.rstrip("\n")
    if not trailers:
        return body + "\n"
    return body + "\n\n" + "".join(f"Co-authored-by: {person}\n" for person in trailers)


def head(repo: S3Repo) -> ObjectID | None:
    """The current commit of ``refs/heads/main`` (read fresh; None before the first commit)."""
    repo.refs.refresh()
    value = repo.refs.read_ref(MAIN)
    return ObjectID(value) if value else None


def commit_files(repo: S3Repo, files: Mapping[str, bytes], *, message: str, author: str, committer: str | None = None,
                 when: int, parent_expected: bytes | None, co_authors: Sequence[str] = (), timezone: int = 0,
                 tag: str | None = None, tag_message: str | None = None) -> ObjectID:
    """Commit ``files`` (flat: ``prd.md``, ``CHANGELOG.md``, ``prd.json``) as the whole tree of a new
    commit on ``refs/heads/main``; returns the commit id.

    ``parent_expected`` is the head the caller built the new version on (None: the repository has
    no commit yet); it becomes the parent.  When ``main`` is elsewhere (another writer committed
    first) this raises :class:`RefConflict` with ``actual`` = the new head: rebuild on it and retry.
    ``tag`` creates the annotated tag ``refs/tags/<tag>`` (message ``tag_message``, tagger the
    committer) in the same atomic refs write as the branch move; a tag name already taken raises
    :class:`RefConflict` and changes nothing.  ``when`` is the epoch second of both author and
    committer dates (``timezone`` in seconds east of UTC); identities are ``"Name <email>"``.

    Steps: read the refs (1 GET) and refuse early on a conflict; write one pack with the new objects
    (2 PUTs); swap the refs document (1 PUT).  Should the process die between the pack and the swap,
    the pack is merely unreferenced (see the module docstring).  Idempotent: when ``main`` (and the
    tag) already hold the commit these arguments make, nothing is written and its id is returned.
    """
    # Everything is built (and checked) before the first S3 call.
    committer = committer or author
    author_id, committer_id = _identity(author, "author"), _identity(committer, "committer")
    expected = ObjectID(parent_expected) if parent_expected else None
    tag_ref = Ref(TAGS + tag.encode()) if tag is not None else None
    if tag_ref is not None and not check_ref_format(Ref(tag_ref[len(b"refs/"):])):
        raise ValueError(f"not a valid tag name: {tag!r}")
    objects: list[ShaFile] = []
    tree = Tree()
    for name, content in sorted(files.items()):
        blob = Blob.from_string(content)
        tree.add(_file_name(name), FILE_MODE, blob.id)
        objects.append(blob)
    commit = Commit()
    commit.tree = tree.id
    commit.parents = [expected] if expected else []
    commit.author, commit.committer = author_id, committer_id
    commit.author_time = commit.commit_time = when
    commit.author_timezone = commit.commit_timezone = timezone
    commit.message = with_co_authors(message, co_authors, author=author).encode()
    objects += [tree, commit]
    updates = [RefUpdate(MAIN, commit.id, expected, peeled=commit.id)]
    if tag_ref is not None and tag is not None:
        tag_object = Tag()
        tag_object.name = tag.encode()
        tag_object.object = (Commit, commit.id)
        tag_object.tagger = committer_id
        tag_object.tag_time = when
        tag_object.tag_timezone = timezone
        tag_object.message = ((tag_message or tag).rstrip("\n") + "\n").encode()
        objects.append(tag_object)
        updates.append(RefUpdate(tag_ref, tag_object.id, None, peeled=commit.id))

    # Refuse before writing anything when the refs already disagree (the swap checks again).  Refs
    # that already hold this very commit and tag mean a repeat of a call that landed: done.
    repo.refs.refresh()
    current = {update.name: repo.refs.read_ref(update.name) for update in updates}
    if all(current[update.name] == update.new for update in updates):
        return commit.id
    for update in updates:
        if current[update.name] not in (update.expected, update.new):
            raise RefConflict(update.name, update.expected, current[update.name])

    repo.object_store.add_objects([(obj, None) for obj in objects])
    repo.refs.apply(updates)
    return commit.id


def history(repo: S3Repo, *, ref: Ref = MAIN, limit: int | None = None) -> list[Commit]:
    """Commits from ``ref`` back along first parents, newest first (the log of a linear history).

    ``ref`` is read from the repository's snapshot of the refs (:func:`head` or ``repo.refs.refresh()``
    takes a new one), so a reader sees one consistent history however long the walk.
    """
    _, value = repo.refs.follow(ref)
    commits: list[Commit] = []
    while value is not None and (limit is None or len(commits) < limit):
        commit = repo.get_object(value)
        if not isinstance(commit, Commit):
            raise TypeError(f"{value!r} is a {commit.type_name!r}, not a commit")
        commits.append(commit)
        value = commit.parents[0] if commit.parents else None
    return commits


def read_files(repo: S3Repo, commit_id: bytes) -> dict[str, bytes]:
    """The files of a commit's tree (top level) by name."""
    commit = repo.get_object(ObjectID(commit_id))
    if not isinstance(commit, Commit):
        raise TypeError(f"{commit_id!r} is not a commit")
    tree = repo.get_object(commit.tree)
    assert isinstance(tree, Tree)
    files: dict[str, bytes] = {}
    for entry in tree.iteritems():
        blob = repo.get_object(entry.sha)
        if isinstance(blob, Blob):
            files[entry.path.decode()] = blob.as_raw_string()
    return files
