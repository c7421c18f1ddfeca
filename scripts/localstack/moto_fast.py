"""A fast path for moto's DynamoDB responses: the same JSON, without the generic serializer's walk.

Why: moto 5.2.5 serialises every response through ``moto.core.serialize``, which walks the
operation's output shape and, for *every member of every structure*, asks an attribute picker
for the value: it builds a context object, runs six alias providers and ``botocore.xform_name``
on each, and looks the member up under each alias.  A DynamoDB ``AttributeValue`` is a structure
of ten members, so a ``Query`` returning 50 items of ten attributes does that ~5,000 times; on
the local stack this was about half of moto's CPU (the ``Query`` of a PRD's connections on every
relayed edit).

What: for the JSON protocol the response body is ``json.dumps`` of a plain dict mirroring the
output shape.  This module compiles each output shape *once* into small functions that build the
very same dict from the result dict moto's handler returned, then calls the same ``json.dumps``.

Why it is safe (the output is byte-identical, not merely equivalent):

* **Same lookups.**  Which key of a result dict feeds which member is decided by moto's own
  ``XFormedAttributePicker.get_possible_keys`` (called at compile time on the real shapes, with
  ``parent`` set as the generic serializer sets it).  For a plain ``dict`` the candidates depend
  only on the shapes, so computing them once is exact; the first candidate present wins, a
  ``None`` value leaves the member out, as in ``_serialize_structure_member``.
* **Same conversions.**  Strings go through the same ``str()``/enum rule, blobs through the same
  base64 (``b64encode().strip()``), integers and longs through ``int()``, floats and doubles
  through ``float()``, timestamps through moto's own ``TimestampSerializer``, documents and
  booleans are passed through; a list item that serialises to nothing is kept raw, a map value
  that serialises to nothing is dropped, exactly like the JSON serializer.
* **Same order.**  Structures are emitted in shape-member order, maps and lists in their own
  order, so ``json.dumps`` (same call, same arguments) yields the same bytes.
* **Narrow.**  Only successful results (``ActionResult``/``DynamoResult``/``EmptyResult``, not
  subclasses with their own ``execute_result``) of DynamoDB's JSON protocol with the plain
  ``JSONSerializer``, no response transformers, no pretty printing, no event streams, and shapes
  without serialization names.  Any value of a type the compiled code does not mirror (an object
  instead of a dict, a dict subclass, a blob that is not bytes/str, ...) raises internally and the
  request is served by moto's generic path; errors always are.

``tests/unit/test_moto_fast.py`` runs a corpus of real operations both ways and compares the
bodies byte for byte.  ``install(verify=True)`` serialises every response both ways at runtime
and logs any difference (for a debugging session, not for speed).
"""

from __future__ import annotations

import base64
import bisect
import copy
import functools
import inspect
import json
import logging
import operator
import threading
from collections.abc import Callable
from enum import Enum
from io import BytesIO
from typing import Any

log = logging.getLogger("localstack.moto_fast")

Serializer = Callable[[Any], Any]
_SKIP: Any = object()  # "nothing is set for this value" (the generic serializer writes no key)
_EMPTIES: list[Any] = [None, {}, []]  # the generic string rule: these are passed through unchanged


class _Unsupported(Exception):
    """The value (or shape) is outside what the compiled code mirrors: use moto's generic path."""


class _Ref:
    """A late-bound serializer, for recursive shapes (``AttributeValue`` contains maps of itself)."""

    __slots__ = ("fn",)

    def __init__(self) -> None:
        self.fn: Serializer | None = None

    def __call__(self, value: Any) -> Any:
        assert self.fn is not None
        return self.fn(value)


def _string(value: Any) -> Any:
    if type(value) is str:
        return value
    if isinstance(value, Enum):
        value = value.value
    return str(value) if value not in _EMPTIES else value


def _blob(value: Any) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif not isinstance(value, bytes | bytearray):
        raise _Unsupported(f"blob of type {type(value).__name__}")
    return base64.b64encode(value).strip().decode("utf-8")


def _integer(value: Any) -> int:
    if type(value) is int:
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _Unsupported(f"integer from {type(value).__name__}") from None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _Unsupported(f"float from {type(value).__name__}") from None


def _identity(value: Any) -> Any:
    return value


class _Compiler:
    """Compiles the shapes of one service model into serializers (one per shape name)."""

    def __init__(self) -> None:
        from moto.core.serialize import BaseJSONSerializer, TimestampSerializer

        self._timestamps = TimestampSerializer(BaseJSONSerializer.DEFAULT_TIMESTAMP_FORMAT)
        self._by_name: dict[str, Serializer] = {}

    def compile(self, shape: Any) -> Serializer:
        if shape.serialization.get("name"):
            raise _Unsupported(f"shape {shape.name} has a serialization name")
        if shape.type_name == "timestamp":  # member traits (timestampFormat) matter: not cached by name
            return self._timestamp(shape)
        known = self._by_name.get(shape.name)
        if known is not None:
            return known
        kind = shape.type_name
        if kind == "structure":
            if shape.is_document_type:
                fn: Serializer = _identity
            else:
                ref = _Ref()
                self._by_name[shape.name] = ref  # recursion resolves to this until it is built
                try:
                    fn = self._structure(shape)
                except BaseException:
                    del self._by_name[shape.name]
                    raise
                ref.fn = fn
        elif kind == "list":
            fn = self._list(shape)
        elif kind == "map":
            fn = self._map(shape)
        elif kind == "string":
            fn = _string
        elif kind == "blob":
            fn = _blob
        elif kind in ("integer", "long"):
            fn = _integer
        elif kind in ("float", "double"):
            fn = _float
        else:  # boolean and anything else the JSON serializer writes as is
            fn = _identity
        self._by_name[shape.name] = fn
        return fn

    def _timestamp(self, shape: Any) -> Serializer:
        timestamps = self._timestamps

        def timestamp(value: Any) -> Any:
            wrapper: dict[str, Any] = {}
            timestamps.serialize(wrapper, value, shape, "timestamp")
            return wrapper["timestamp"]

        return timestamp

    def _list(self, shape: Any) -> Serializer:
        member = self.compile(shape.member)

        def serialize_list(value: Any) -> list[Any]:
            if type(value) is not list:
                raise _Unsupported(f"list of type {type(value).__name__}")
            out = []
            for item in value:
                result = member(item)
                out.append(item if result is _SKIP else result)
            return out

        return serialize_list

    def _map(self, shape: Any) -> Serializer:
        item = self.compile(shape.value)

        def serialize_map(value: Any) -> dict[Any, Any]:
            if type(value) is not dict:
                raise _Unsupported(f"map of type {type(value).__name__}")
            out = {}
            for key, sub in value.items():
                result = item(sub)
                if result is not _SKIP:
                    out[key] = result
            return out

        return serialize_map

    def _structure(self, shape: Any) -> Serializer:
        from moto.core.serialize import AttributePickerContext, XFormedAttributePicker

        picker = XFormedAttributePicker()
        members: list[tuple[str, tuple[str, ...], Serializer]] = []
        for key, member_shape in shape.members.items():
            member_shape.parent = shape  # what the generic serializer sets before picking
            context = AttributePickerContext(obj={}, key=key, shape=member_shape, key_path="")
            candidates = tuple(dict.fromkeys(picker.get_possible_keys(context)))
            if any("." in c for c in candidates):
                raise _Unsupported(f"dotted alias in {shape.name}.{key}")
            members.append((key, candidates, self.compile(member_shape)))
        # A one-key dict (every AttributeValue) whose key is a candidate of exactly one member:
        # only that member can pick a value, so the whole walk reduces to one lookup.
        owners: dict[str, list[int]] = {}
        for index, (_key, candidates, _fn) in enumerate(members):
            for candidate in candidates:
                owners.setdefault(candidate, []).append(index)
        single = {c: members[i[0]] for c, i in owners.items() if len(i) == 1}

        def serialize_structure(value: Any) -> Any:
            if value is None:
                return _SKIP
            if type(value) is not dict:
                raise _Unsupported(f"structure from {type(value).__name__}")
            if len(value) == 1:
                ((only, sub),) = value.items()
                hit = single.get(only)
                if hit is not None:
                    if sub is None:
                        return {}
                    result = hit[2](sub)
                    return {} if result is _SKIP else {hit[0]: result}
                if only not in owners:
                    return {}
            out: dict[str, Any] = {}
            for key, candidates, fn in members:
                for candidate in candidates:
                    if candidate in value:
                        sub = value[candidate]
                        break
                else:
                    continue
                if sub is None:
                    continue
                result = fn(sub)
                if result is not _SKIP:
                    out[key] = result
            return out

        return serialize_structure


_compilers: dict[int, _Compiler] = {}
_plans: dict[tuple[int, str], Serializer | None] = {}
_compile_lock = threading.Lock()


def _plan(operation_model: Any) -> Serializer | None:
    """The compiled serializer of an operation's output (None: not supported, use the generic path)."""
    service_model = operation_model.service_model
    key = (id(service_model), str(operation_model.name))
    try:
        return _plans[key]
    except KeyError:
        pass
    with _compile_lock:
        if key in _plans:
            return _plans[key]
        compiler = _compilers.setdefault(id(service_model), _Compiler())
        output = operation_model.output_shape
        plan: Serializer | None
        if output is None:
            plan = None
        else:
            try:
                plan = compiler.compile(output)
            except _Unsupported as exc:
                log.info("moto_fast: %s stays on the generic serializer (%s)", operation_model.name, exc)
                plan = None
        _plans[key] = plan
        return plan


_ORIGINAL = "_moto_fast_original_serialized"


def _fast_serialized(self: Any, action_result: Any, *, original: Callable[..., Any]) -> Any:
    """``BaseResponse.serialized`` for DynamoDB, through the compiled plan when it applies."""
    from moto import settings
    from moto.core.responses import ActionResult, EmptyResult
    from moto.core.serialize import JSONSerializer, get_serializer_class
    from moto.core.utils import get_service_model
    from moto.dynamodb.responses import DynamoResult

    if type(action_result) not in (ActionResult, DynamoResult, EmptyResult):
        return original(self, action_result)
    result = action_result.result
    if isinstance(result, Exception) or getattr(self, "RESPONSE_KEY_PATH_TO_TRANSFORMER", None):
        return original(self, action_result)
    if settings.PRETTIFY_RESPONSES:
        return original(self, action_result)
    service_model = get_service_model(self.boto3_service_name)
    if service_model.protocol != "json":
        return original(self, action_result)
    try:
        operation_model = service_model.operation_model(self._get_action())
    except Exception:
        return original(self, action_result)
    protocol = self.determine_response_protocol(service_model)
    if get_serializer_class(service_model.service_name, protocol) is not JSONSerializer:
        return original(self, action_result)
    if operation_model.has_event_stream_output:
        return original(self, action_result)
    plan = _plan(operation_model)
    if plan is None:
        return original(self, action_result)
    try:
        body_obj = {} if result is None else plan(result)
    except _Unsupported:
        return original(self, action_result)
    if body_obj is _SKIP:
        body_obj = {}
    body = json.dumps(body_obj, indent=None)
    json_version = service_model.metadata.get("jsonVersion", "1.0")
    headers: dict[str, Any] = {"Content-Type": f"application/x-amz-json-{json_version}"}
    headers.update(self.response_headers)
    status = operation_model.http.get("responseCode", JSONSerializer.DEFAULT_RESPONSE_CODE)
    return status, headers, body


def _verifying(self: Any, action_result: Any, *, original: Callable[..., Any]) -> Any:
    fast = _fast_serialized(self, action_result, original=original)
    slow = original(self, action_result)
    if fast[0] != slow[0] or fast[2] != slow[2] or fast[1].get("Content-Type") != slow[1].get("Content-Type"):
        log.error("moto_fast: %s differs from the generic serializer: %r != %r",
                  self._get_action(), fast[2][:500], slow[2][:500])
    return slow


def install(*, verify: bool = False) -> None:
    """Serve DynamoDB responses through the compiled fast path (in this process). Idempotent.

    ``verify=True`` serialises every response both ways and logs differences (slower than moto).
    """
    from moto.core.responses import BaseResponse
    from moto.dynamodb.responses import DynamoHandler

    current = DynamoHandler.__dict__.get("serialized")
    if current is not None and hasattr(current, _ORIGINAL):
        return
    original = BaseResponse.serialized
    chosen = _verifying if verify else _fast_serialized

    def serialized(self: Any, action_result: Any) -> Any:
        return chosen(self, action_result, original=original)

    setattr(serialized, _ORIGINAL, original)
    DynamoHandler.serialized = serialized  # type: ignore[method-assign]


# ---------------------------------------------------------------- request parameters

Parser = Callable[[Any], Any]


def _compile_input(shape: Any, map_type: type, by_name: dict[str, Parser]) -> Parser:
    """What ``moto.core.parse.JSONParser._parse_shape`` does to a value of ``shape``, as a function:
    structures by member (under its serialization name, a ``None`` member left out), lists item by
    item, maps key and value, blobs through the default blob parser (base64), timestamps through the
    default timestamp parser, floats through ``float``, integers through ``int``, the rest as is.
    ``map_type`` is the parser's ``MAP_TYPE``.  Recursive shapes are compiled once (``by_name``)."""
    from moto.core.parse import JSONParser, default_blob_parser, default_timestamp_parser

    kind = shape.type_name
    if kind == "structure":
        if shape.is_document_type:
            return _identity
        known = by_name.get(shape.name)
        if known is not None:
            return known
        ref = _Ref()
        by_name[shape.name] = ref
        members = [(name, member.serialization.get("name", name), _compile_input(member, map_type, by_name))
                   for name, member in shape.members.items()]

        def structure(value: Any) -> Any:
            if value is None:
                return None
            parsed = map_type()
            get = value.get
            for name, json_name, parse in members:
                raw = get(json_name)
                if raw is not None:
                    parsed[name] = parse(raw)
            return parsed

        ref.fn = structure
        by_name[shape.name] = structure
        return structure
    if kind == "list":
        item = _compile_input(shape.member, map_type, by_name)
        return lambda node: [item(value) for value in node]
    if kind == "map":
        key, value = (_compile_input(shape.key, map_type, by_name), _compile_input(shape.value, map_type, by_name))

        def mapping(node: Any) -> Any:
            parsed = map_type()
            for name, item in node.items():
                parsed[key(name)] = value(item)
            return parsed

        return mapping
    if not hasattr(JSONParser, f"_parse_{kind}"):
        return _identity  # JSONParser's _default_handle
    if kind == "blob":
        return default_blob_parser  # type: ignore[no-any-return]
    if kind == "timestamp":
        return default_timestamp_parser  # type: ignore[no-any-return]
    if kind in ("float", "double"):
        return float
    if kind in ("integer", "byte", "short", "long"):
        return int
    raise _Unsupported(f"JSONParser parses {kind} shapes in a way not mirrored here")


# (id of the operation model, map type) -> (the model, kept so that its id is not reused; its plan)
_INPUT_PLANS: dict[tuple[int, type], tuple[Any, Parser | None]] = {}


def _input_plan(operation_model: Any, map_type: type) -> Parser | None:
    """``JSONParser(operation_model, map_type=map_type).parse({"body": body, ...})`` as a function of
    the body (the JSON protocol reads nothing else), compiled once per operation; None if not mirrored."""
    key = (id(operation_model), map_type)
    known = _INPUT_PLANS.get(key)
    if known is not None and known[0] is operation_model:
        return known[1]
    shape = operation_model.input_shape
    plan: Parser | None
    if shape is None:
        plan = lambda body: {}  # noqa: E731 - RequestParser.parse: no input shape, no parameters
    else:
        try:
            parse = _compile_input(shape, map_type, {})
        except _Unsupported:
            parse = None

        def from_body(body: Any) -> Any:  # JSONParser._parse_json_body
            if not body:
                document: Any = {}
            else:
                try:
                    text = body.decode("utf-8")
                except (UnicodeDecodeError, AttributeError):
                    text = body
                try:
                    document = json.loads(text)
                except ValueError:
                    document = {"message": text}
            return parse(document)  # type: ignore[misc]

        plan = from_body if parse is not None else None
    if len(_INPUT_PLANS) > 1024:
        _INPUT_PLANS.clear()
    _INPUT_PLANS[key] = (operation_model, plan)
    return plan


def compile_request_parsing() -> None:
    """Parse a DynamoDB request's parameters with a function compiled per operation. Idempotent.

    moto's ``BaseResponse.parse_parameters`` builds a ``JSONParser`` on every request and walks the
    operation's input shape, dispatching on every member's type by name (``getattr(self,
    f"_parse_{type}")``); for the JSON protocol the result depends only on the body and the shapes, so
    the walk is compiled once per operation into closures doing the same steps (``_compile_input``).
    The parser's other inputs (``request.values``, the headers, the path) are unused by the JSON
    protocol and not computed.  Anything else — another protocol or parser, a shape kind not mirrored,
    an input the compiled steps raise on (a hostile body) — goes through moto's own method, which
    then raises what it raises.  ``tests/unit/test_moto_fast.py`` compares the two over a corpus.
    """
    from moto.core.parse import PROTOCOL_PARSERS, JSONParser
    from moto.core.responses import BaseResponse, determine_request_protocol, get_service_model
    from moto.dynamodb.responses import DynamoHandler

    if hasattr(DynamoHandler.__dict__.get("parse_parameters"), _ORIGINAL):
        return
    original = BaseResponse.parse_parameters

    def parse_parameters(self: Any, request: Any) -> None:
        service_model = get_service_model(self.boto3_service_name)
        operation_model = service_model.operation_model(self._get_action())
        if PROTOCOL_PARSERS[determine_request_protocol(service_model, request.content_type)] is JSONParser:
            plan = _input_plan(operation_model, self.PROTOCOL_PARSER_MAP_TYPE)
            if plan is not None:
                try:
                    self.params = plan(request.data)
                    return
                except Exception:  # (moto's own walk raises what it raises on this body)
                    pass
        getattr(parse_parameters, _ORIGINAL)(self, request)

    setattr(parse_parameters, _ORIGINAL, original)
    DynamoHandler.parse_parameters = parse_parameters  # type: ignore[method-assign]


def cache_action_lookup() -> None:
    """Look up a response class's action methods once, not on every request. Idempotent.

    ``BaseResponse.call_action`` asks ``method_names_from_class(self.__class__)`` on every request —
    ``inspect.getmembers`` over a few hundred attributes of the handler class, about 7 % of moto's
    CPU on the co-editing path — only to test whether the action's name is among them.  A class's
    functions are fixed once moto is imported and patched (this runs after every patch of ours), so
    the answer per class is cached; it is the same list.
    """
    import moto.core.responses as responses

    current = responses.method_names_from_class
    if hasattr(current, "cache_info"):
        return
    responses.method_names_from_class = functools.cache(current)  # type: ignore[assignment]


def query_one_partition() -> None:
    """A table ``Query`` reads its partition, not the whole table sorted. Idempotent.

    moto 5.2.5's ``Table.query`` (no index) starts from ``all_items()`` — every item of every
    partition, *sorted* by hash and range key with ``DynamoType`` comparisons — and keeps those whose
    hash key equals the query's.  So each ``Query`` cost grew with the whole table: the doc writer's
    read of one PRD's 500 updates sorted every PRD's updates (and, paged, did so again per page), and
    a roster read sorted every connection of every PRD.  Here, while a table query without an index
    runs, ``all_items()`` of that table answers that partition's items in range-key order — exactly
    the subsequence the filter would keep (``DynamoType``'s hash agrees with its equality, so the
    partition dict's lookup finds the very items ``==`` would), in the same order.  Index queries and
    every other caller of ``all_items()`` (scans, exports) are untouched.

    Such a query without a projection also answers its items without first deep-copying them:
    moto copies every result (``copy.deepcopy(results)``, ~40 % of a 600-item query) so that an
    index's or a projection's reshaping cannot touch the stored items; without either, the results
    are only read — by the filter expression and by the serializer, under the table's lock — so
    the stored items themselves serve.  (The doc writer's read of a PRD's ~600 updates held moto's
    door ~70 ms, and every keystroke with it.)  A page after an ``ExclusiveStartKey`` of the partition
    with a string range key starts from the key's place in the sorted partition, found by bisection,
    where moto would compare every earlier item with the key (the compactor reads 500-1,000 updates
    in pages of 100).
    ``tests/unit/test_moto_fast.py`` compares results with and without it.
    """
    import moto.dynamodb.models.table as table_module
    from moto.dynamodb.models.table import Table

    if getattr(Table.query, "__fast__", False):
        return
    original_query = Table.query
    original_all_items = Table.all_items
    current = threading.local()
    # where index_name comes among the positional arguments after hash_key (the backend passes it so)
    parameters = list(inspect.signature(original_query).parameters)
    index_at = parameters.index("index_name") - 2
    projection_at = parameters.index("projection_expressions") - 2
    start_at = parameters.index("exclusive_start_key") - 2
    forward_at = parameters.index("scan_index_forward") - 2
    table_module.copy = _QueryResultCopies(table_module.copy, current)

    def all_items(self: Any) -> list[Any]:
        target = getattr(current, "partition", None)
        if target is None or target[0] is not self:
            return original_all_items(self)
        try:
            partition = self.items.get(target[1])  # .get: the defaultdict makes no empty partition
        except TypeError:  # a map, list or set as the key's value: unhashable; moto compares instead
            return original_all_items(self)
        if partition is None:
            return []
        if not self.range_key_attr:
            return [partition]
        items = list(partition.values())
        if all(item.range_key.type == "S" for item in items):
            # String keys: the same order as comparing the DynamoTypes (their cast_value is the
            # string itself), without a Python-level comparison per step.
            items.sort(key=lambda item: item.range_key.value)
            after = target[2]
            if after is None:
                return items
            # The page starts after ExclusiveStartKey: moto walks and compares every item before it
            # (``_item_comes_before_dct``), dropping a prefix of the sorted list — forward, the items
            # up to and including the key; backward (it reverses this list), those from the key on.
            # Leaving them out here gives it the same remainder to start from (its walk still
            # compares the first item left with the key, and would drop it were it not after it).
            start, forward = after
            keys = [item.range_key.value for item in items]
            return items[bisect.bisect_right(keys, start):] if forward else items[:bisect.bisect_left(keys, start)]
        return sorted(items, key=lambda item: item.range_key)

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[index_at] if len(args) > index_at else None)
        if index_name or hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        projection = kwargs.get("projection_expressions",
                                args[projection_at] if len(args) > projection_at else None)
        start_key = kwargs.get("exclusive_start_key", args[start_at] if len(args) > start_at else None)
        forward = kwargs.get("scan_index_forward", args[forward_at] if len(args) > forward_at else True)
        outer = getattr(current, "partition", None), getattr(current, "results_read_only", False)
        current.partition = (self, hash_key, _start_after(self, hash_key, start_key, forward))
        current.results_read_only = not projection
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            current.partition, current.results_read_only = outer

    query.__fast__ = True  # type: ignore[attr-defined]
    setattr(query, _ORIGINAL, original_query)
    setattr(all_items, _ORIGINAL, original_all_items)
    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]


def fast_item_sizes() -> None:
    """``DynamoType.size`` and ``Item.size`` of scalar values without moto's chain of type questions.
    Idempotent.

    moto sizes every item it stores (``LimitedSizeDict`` re-adds the sizes of all attributes on
    each one set: the 400 KB limit) and every item a query walks (twice per item answered: the 1 MB
    page limit): ~2.7 µs per attribute, asking ``is_number``, ``is_set``, ``is_list``, ``is_map``
    and ``isinstance(bool)`` before measuring a string.  A paged read of a PRD's 500 updates spent
    ~40 % of its time there.  For a ``S`` or ``B`` value held as ``str`` or ``bytes`` and for any
    ``N`` the answer is moto's own formula (UTF-8 length, byte length, ``len(str(value))``);
    every other value (sets, lists, maps, booleans, nulls, anything unusual) takes moto's method.
    ``tests/unit/test_moto_fast.py`` compares both over values and items of every type.
    """
    from moto.dynamodb.models.dynamo_type import DynamoType, Item
    from moto.dynamodb.models.utilities import bytesize

    if getattr(DynamoType.size, "__fast__", False):
        return
    original_value_size = DynamoType.size
    original_item_size = Item.size

    def value_size(self: Any) -> int:
        kind = self.type
        if kind == "S" or kind == "B":
            value = self.value
            if type(value) is str:
                return len(value.encode("utf-8"))
            if type(value) is bytes:
                return len(value)
        elif kind == "N":
            return len(str(self.value))
        return original_value_size(self)

    def item_size(self: Any) -> int:
        total = 0
        for key, value in self.attrs.items():
            total += len(key.encode("utf-8")) if type(key) is str else bytesize(key)
            total += value_size(value) if type(value) is DynamoType else value.size()
        return total

    for patched, original in ((value_size, original_value_size), (item_size, original_item_size)):
        patched.__fast__ = True  # type: ignore[attr-defined]
        setattr(patched, _ORIGINAL, original)
    DynamoType.size = value_size  # type: ignore[method-assign]
    Item.size = item_size  # type: ignore[method-assign]


def _start_after(table: Any, hash_key: Any, start_key: Any, forward: Any) -> tuple[str, bool] | None:
    """Where a table query's page starts in its partition's ``S`` range keys — the
    ``ExclusiveStartKey``'s range value and the direction — when moto's walk over the items before it
    would compare only those range values: a key of this partition (its hash value equal to the
    query's) whose range value is a string.  ``None`` otherwise (no key, another shape): moto walks."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    if type(start_key) is not dict or not table.range_key_attr or type(forward) is not bool:
        return None
    hash_value, range_value = start_key.get(table.hash_key_attr), start_key.get(table.range_key_attr)
    if type(hash_value) is not dict or type(range_value) is not dict or list(range_value) != ["S"] \
            or type(range_value["S"]) is not str or len(hash_value) != 1:
        return None
    try:
        if DynamoType(hash_value) != hash_key:
            return None
    except Exception:  # whatever moto's comparison would make of it, it makes in its own walk
        return None
    return range_value["S"], forward


_COMPARISONS = ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__")


def fast_string_comparisons() -> None:
    """``DynamoType`` comparisons of two strings without ``cast_value``. Idempotent.

    moto compares key values through ``cast_value``, a property that asks the value's type five
    questions before answering a string's ``value`` as it is: ~4 µs a comparison.  A query sorts its
    partition by range key with them, again after that (moto's own sort), and pages by walking the
    items before ``ExclusiveStartKey`` with them: a paged read of a PRD's 1,000 updates spent most of
    its ~46 ms a page comparing.  For two ``S`` values ``cast_value`` is ``value`` on both sides, so
    comparing the values directly answers the same; any other pair takes moto's own comparison.
    ``tests/unit/test_moto_fast.py`` compares both over pairs of every type.
    """
    from moto.dynamodb.models.dynamo_type import DynamoType

    if getattr(DynamoType.__lt__, "__fast__", False):
        return

    def fast(name: str, original: Callable[[Any, Any], bool], compare: Callable[[str, str], bool]) -> None:
        def method(self: Any, other: Any) -> bool:
            if self.type == "S" and type(other) is DynamoType and other.type == "S":
                return compare(self.value, other.value)
            return original(self, other)

        method.__fast__ = True  # type: ignore[attr-defined]
        method.__name__ = name
        setattr(method, _ORIGINAL, original)
        setattr(DynamoType, name, method)

    for name in _COMPARISONS:  # (__hash__ stays moto's: these are set after the class)
        fast(name, getattr(DynamoType, name), getattr(operator, name))


class _QueryResultCopies:
    """Stands in for the ``copy`` module in moto's table module: while a table query whose results
    are only read runs in this thread (``query_one_partition``), a deep copy of its result list is a
    new list of the same items; any other copy is the real module's."""

    def __init__(self, real: Any, current: threading.local) -> None:
        self._real = real
        self._current = current

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if type(value) is list and getattr(self._current, "results_read_only", False):
            return list(value)
        return self._real.deepcopy(value, memo)


def cache_condition_parse() -> None:
    """Parse each DynamoDB condition or filter expression once per (expression, names, values).
    Idempotent.

    Every ``PutItem`` of an edit carries ``attribute_not_exists(...)``, and moto lexes and parses it
    again each time (``get_filter_expression``: ~10 % of moto's CPU on the co-editing path).  The
    parsed tree only reads the item it is evaluated on (``expr(item)``), so one tree per distinct
    input serves every request with that input; the key is the expression and the JSON of the names
    (from a JSON request, so they round-trip exactly).  Expressions with values are parsed as before:
    their values mostly change from request to request.  An expression moto refuses raises each
    time, as before (a refusal is not cached).
    """
    import moto.dynamodb.models as models
    import moto.dynamodb.models.table as table_module

    original = models.get_filter_expression
    if getattr(original, "__fast__", False):
        return

    @functools.lru_cache(maxsize=1024)
    def parsed(expression: str | None, names: str, values: str) -> Any:
        return original(expression, json.loads(names), json.loads(values))

    def get_filter_expression(expression: str | None, names: Any, values: Any) -> Any:
        if values:  # values that change per request (a timestamp, an update's fields) would only miss
            return original(expression, names, values)
        try:
            key = json.dumps(names, sort_keys=True), json.dumps(values)
        except (TypeError, ValueError):  # not JSON data after all: parse as moto does
            return original(expression, names, values)
        return parsed(expression, *key)

    get_filter_expression.cache_info = parsed.cache_info  # type: ignore[attr-defined]

    get_filter_expression.__fast__ = True  # type: ignore[attr-defined]
    setattr(get_filter_expression, _ORIGINAL, original)
    models.get_filter_expression = get_filter_expression  # type: ignore[assignment]
    table_module.get_filter_expression = get_filter_expression  # type: ignore[assignment]
    _cache_condition_validation()


class _ParsedCondition:
    """What moto's DynamoDB handlers use of a ``ConditionExpressionParser``: ``parse()`` (its tree
    discarded by every caller, returned anyway as a copy), then the names and values it found — here
    from a parse done once per input.  The lists are the request's own (a ``Query`` appends its
    projection's names to them)."""

    __slots__ = ("_key", "_parse", "expr_attr_names_found", "expr_attr_values_found")

    def __init__(self, parse: Callable[..., Any], key: tuple[str | None, str, str]) -> None:
        self._parse = parse
        self._key = key
        self.expr_attr_names_found: list[str] = []
        self.expr_attr_values_found: list[str] = []

    def parse(self) -> Any:
        tree, names, values = self._parse(*self._key)  # a refused expression raises here, as moto's does
        self.expr_attr_names_found = list(names)
        self.expr_attr_values_found = list(values)
        return copy.deepcopy(tree)


def _cache_condition_validation() -> None:
    """The handlers' own parse of a condition or filter expression, done once per input.

    Before the model layer evaluates a ``PutItem``'s condition (parsed once above), the handler parses
    it again only to check that every ``ExpressionAttributeNames`` entry is used
    (``create_condition_expression_parser(...).parse()`` in ``put_item``, ``query``, ``scan``): another
    ~13 % of a keystroke's ``PutItem``.  The names it finds depend only on the expression and the
    names, so without values (as above) one parse answers every request with that input; the check
    itself still runs per request, on a fresh list.
    """
    import moto.dynamodb.responses as responses

    original = responses.create_condition_expression_parser
    if getattr(original, "__fast__", False):
        return

    @functools.lru_cache(maxsize=1024)
    def parsed(expression: str | None, names: str, values: str) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
        parser = original(expression, json.loads(names), json.loads(values))
        tree = parser.parse()
        return tree, tuple(parser.expr_attr_names_found), tuple(parser.expr_attr_values_found)

    def create_condition_expression_parser(expression: str | None, names: Any, values: Any) -> Any:
        if values:
            return original(expression, names, values)
        try:
            key = expression, json.dumps(names), json.dumps(values)
        except (TypeError, ValueError):
            return original(expression, names, values)
        return _ParsedCondition(parsed, key)

    create_condition_expression_parser.cache_info = parsed.cache_info  # type: ignore[attr-defined]
    create_condition_expression_parser.__fast__ = True  # type: ignore[attr-defined]
    setattr(create_condition_expression_parser, _ORIGINAL, original)
    responses.create_condition_expression_parser = create_condition_expression_parser  # type: ignore[assignment]


def cache_jsonpath_parse() -> None:
    """Parse each JSONPath once, not once per event and target. Idempotent.

    moto's EventBridge builds every delivered event from an input template
    (``EventTemplateParser.parse``): eight JSONPaths (``$.detail``, ``$.source``, ...) for the default
    template, each through ``jsonpath_ng.ext.parse`` — which builds a fresh PLY lexer and yacc
    parser (~1.5 ms) every time.  A ``PutEvents`` matching two rules cost ~30 ms of moto's time,
    during which the door served nobody else (every ``prd.updated`` the doc writer publishes).  A
    parsed expression is an immutable tree (``find`` reads it), so the same path string can share
    one; the cache is bounded (templates and input paths come from the template's rules).
    """
    import jsonpath_ng.ext as ext

    if hasattr(ext.parse, "cache_info"):
        return
    ext.parse = functools.lru_cache(maxsize=1024)(ext.parse)


def sqs_one_clock_read_per_scan() -> None:
    """moto's SQS reads the clock once per scan of a queue, and cheaply. Idempotent.

    Every ``ReceiveMessage`` (the stack's pollers long-poll each queue every second) lists the
    queue's deliverable messages through ``Queue.messages``, which asks each message whether it is
    ``visible`` and not ``delayed``; each of those reads the clock through ``unix_time_millis``, which
    builds two ``datetime``s and subtracts them (~1.5 µs).  A queue with thousands of messages in
    flight or delayed — a backlog, exactly when the machine is busiest — made these scans ~45 % of
    moto's CPU in one saturated co-editing load, and the door's other requests waited on the GIL.

    Here the module's ``unix_time``/``unix_time_millis`` read ``time.time()`` (what the ``datetime``
    arithmetic computes, to the microsecond) when given no ``datetime``, and ``Queue.messages``
    reads the clock once per scan and compares each message's own ``visible_at``/``delayed_until``
    with it, as ``visible`` (``now > visible_at``) and ``delayed`` (``now < delayed_until``) do —
    the same messages in the same order, judged at one instant rather than a few microseconds
    apart.  ``tests/unit/test_moto_fast.py`` compares the lists and receives with moto's own.
    """
    import time

    import moto.sqs.models as models

    if getattr(models.unix_time, "__fast__", False):
        return
    original_unix_time = models.unix_time
    original_messages = models.Queue.messages

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else original_unix_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    def messages(self: Any) -> list[Any]:
        now = time.time() * 1000.0
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    for function in (unix_time, unix_time_millis):
        function.__fast__ = True  # type: ignore[attr-defined]
    setattr(unix_time, _ORIGINAL, original_unix_time)
    setattr(unix_time_millis, _ORIGINAL, models.unix_time_millis)
    fast_messages = property(messages)
    setattr(messages, _ORIGINAL, original_messages)
    models.unix_time = unix_time  # type: ignore[assignment]
    models.unix_time_millis = unix_time_millis  # type: ignore[assignment]
    models.Queue.messages = fast_messages  # type: ignore[method-assign,assignment]


SQS_RESCAN_SECONDS = 0.5
"""How often a waiting long poll looks again for messages that became deliverable without a
notification: a visibility timeout or a delivery delay ending (moto itself looks once a second).
Sends, deletes and visibility changes wake it at once.  With every 0.2 s, an idle stack's moto used
~10 ms of CPU a second more than with moto's own polls; at 0.5 s the difference was not measurable."""


def sqs_long_polls_wait() -> None:
    """A long-polling ``ReceiveMessage`` waits for a message it may deliver, rather than spin. Idempotent.

    moto's long poll scans the queue, and when the scan delivered nothing it waits on the queue's
    condition until ``Queue.messages`` (the visible messages) is non-empty.  A FIFO message whose
    group has another message in flight is visible but may not be delivered, so that wait returns at
    once and the poll spins — a whole core for the rest of its ``WaitTimeSeconds``.  It also decides
    which groups are busy once per call, so a message freed by its group's in-flight message being
    deleted is not delivered by that poll at all, where SQS delivers it then.  On the local stack the
    doc writer's queue (one group per PRD, a message per 5 s) had exactly that while a compaction ran
    long: 28 % of moto's samples in the 50-editor load, every edit stalled for seconds.

    Here a long poll is a series of moto's own single scans (``WaitTimeSeconds`` 0, so each decides
    the busy groups afresh), holding the queue's condition so a message sent between a scan and the
    wait is not missed; between scans it waits on that condition, which a new message (moto's
    ``add_message``), a deleted message and a visibility change (both notify here) wake, for at most
    :data:`SQS_RESCAN_SECONDS`.  A poll without ``WaitTimeSeconds`` is moto's own call unchanged.
    ``tests/unit/test_moto_fast.py`` checks delivery and that a waiting poll scans a few times, not
    thousands.
    """
    import time

    import moto.sqs.models as models

    backend, queue_class = models.SQSBackend, models.Queue
    if getattr(backend.receive_message, "__fast__", False):
        return
    original_receive = backend.receive_message
    original_delete = queue_class.delete_message
    original_change = backend.change_message_visibility

    def receive_message(self: Any, queue_name: str, count: int, wait_seconds_timeout: int,
                        visibility_timeout: int, message_attribute_names: list[str] | None = None) -> list[Any]:
        if not wait_seconds_timeout:
            return original_receive(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
        queue = self.get_queue(queue_name)
        deadline = time.monotonic() + wait_seconds_timeout
        with queue._messages_lock:
            while True:
                result: list[Any] = original_receive(self, queue_name, count, 0, visibility_timeout,
                                                     message_attribute_names)
                remaining = deadline - time.monotonic()
                if result or remaining <= 0:
                    return result
                queue._messages_lock.wait(min(remaining, SQS_RESCAN_SECONDS))

    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            original_delete(self, receipt_handle)
            self._messages_lock.notify_all()  # a FIFO group may be free now

    def change_message_visibility(self: Any, queue_name: str, receipt_handle: str, visibility_timeout: int) -> None:
        original_change(self, queue_name, receipt_handle, visibility_timeout)
        queue = self.get_queue(queue_name)
        with queue._messages_lock:
            queue._messages_lock.notify_all()  # the message may be visible again

    for patched, original in ((receive_message, original_receive), (delete_message, original_delete),
                              (change_message_visibility, original_change)):
        patched.__fast__ = True  # type: ignore[attr-defined]
        setattr(patched, _ORIGINAL, original)
    backend.receive_message = receive_message  # type: ignore[method-assign]
    backend.change_message_visibility = change_message_visibility  # type: ignore[method-assign]
    queue_class.delete_message = delete_message  # type: ignore[method-assign]


def uninstall() -> None:
    """Back to moto's generic serializer, its whole-table query and its SQS clock and long polls (tests, benchmarks)."""
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    current = DynamoHandler.__dict__.get("serialized")
    if current is not None and hasattr(current, _ORIGINAL):
        del DynamoHandler.serialized
    if hasattr(DynamoHandler.__dict__.get("parse_parameters"), _ORIGINAL):
        del DynamoHandler.parse_parameters
    for name in ("query", "all_items"):
        patched = Table.__dict__.get(name)
        if patched is not None and hasattr(patched, _ORIGINAL):
            setattr(Table, name, getattr(patched, _ORIGINAL))
    from moto.dynamodb.models.dynamo_type import DynamoType

    for name in (*_COMPARISONS, "size"):
        patched = DynamoType.__dict__.get(name)
        if patched is not None and hasattr(patched, _ORIGINAL):
            setattr(DynamoType, name, getattr(patched, _ORIGINAL))
    from moto.dynamodb.models.dynamo_type import Item

    patched_size = Item.__dict__.get("size")
    if patched_size is not None and hasattr(patched_size, _ORIGINAL):
        Item.size = getattr(patched_size, _ORIGINAL)  # type: ignore[method-assign]
    import moto.dynamodb.models as models
    import moto.dynamodb.models.table as table_module

    patched_parse = models.get_filter_expression
    if hasattr(patched_parse, _ORIGINAL):
        models.get_filter_expression = table_module.get_filter_expression = getattr(patched_parse, _ORIGINAL)
    import moto.dynamodb.responses as responses

    patched_validation = responses.create_condition_expression_parser
    if hasattr(patched_validation, _ORIGINAL):
        responses.create_condition_expression_parser = getattr(patched_validation, _ORIGINAL)
    if isinstance(table_module.copy, _QueryResultCopies):
        table_module.copy = table_module.copy._real  # type: ignore[assignment]
    import moto.sqs.models as sqs_models

    for name in ("unix_time", "unix_time_millis"):
        patched = getattr(sqs_models, name)
        if hasattr(patched, _ORIGINAL):
            setattr(sqs_models, name, getattr(patched, _ORIGINAL))
    messages = sqs_models.Queue.__dict__["messages"]
    if messages.fget is not None and hasattr(messages.fget, _ORIGINAL):
        sqs_models.Queue.messages = getattr(messages.fget, _ORIGINAL)
    for owner, name in ((sqs_models.SQSBackend, "receive_message"),
                        (sqs_models.SQSBackend, "change_message_visibility"), (sqs_models.Queue, "delete_message")):
        patched = owner.__dict__.get(name)
        if patched is not None and hasattr(patched, _ORIGINAL):
            setattr(owner, name, getattr(patched, _ORIGINAL))


# ---------------------------------------------------------------- requests and request ids

_ENVIRONS: dict[tuple[str, str], dict[str, Any]] = {}


# What werkzeug's ``url_root`` and moto's ``raw_path`` read of a request: its ``raw_url`` is a function of them.
_URL_ENVIRON = ("wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME", "RAW_URI", "PATH_INFO",
                "QUERY_STRING")
_RAW_URLS: dict[tuple[Any, ...], str] = {}


@functools.cache
def _door_request_class() -> type:
    """moto's ``Request`` whose ``raw_url`` is computed once per URL-making part of the environ.

    ``BaseResponse.setup_class`` asks every request for its ``raw_url``: werkzeug rebuilds the URL
    root (host, server, script root, IRI conversion) each time, ~40 µs of a ~600 µs ``PutItem``; the
    door's requests go to a few URLs.  The same value: moto's own property, on the first request
    with those parts (werkzeug's ``trusted_hosts`` is not set, so nothing else is read)."""
    from moto.core.request import Request

    compute = Request.raw_url.fget

    class DoorRequest(Request):  # type: ignore[misc]
        @property
        def raw_url(self) -> str:
            environ = self.environ
            key = tuple(environ.get(name) for name in _URL_ENVIRON)
            found = _RAW_URLS.get(key)
            if found is None:
                found = compute(self)
                if len(_RAW_URLS) > 1024:
                    _RAW_URLS.clear()
                _RAW_URLS[key] = found
            return found

    return DoorRequest


def request_from_door(method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> Any:
    """``moto.core.request.Request.from_primitives(method, url, Headers(headers), body)``, built faster.

    ``from_primitives`` runs werkzeug's ``EnvironBuilder`` on every request (URL parsing, IRI
    encoding, header normalisation): ~20 % of moto's CPU per DynamoDB call on the co-editing path.
    Its environ has two parts: one that depends only on the method and URL (the request line, the
    server's name and port, the WSGI constants), built here once per (method, URL) by the same
    ``EnvironBuilder``; and the part from the headers and body, filled in per request exactly as
    ``EnvironBuilder.get_environ`` fills it (``CONTENT_TYPE`` from the first ``Content-Type``,
    ``CONTENT_LENGTH`` from the body, each other header as ``HTTP_<NAME>``, repeats joined by ``", "``)
    and then as ``from_primitives`` finishes it.  Bodiless requests and ``Transfer-Encoding`` (which
    ``from_primitives`` treats specially) take ``from_primitives`` itself.
    ``tests/unit/test_moto_fast.py`` compares the two environs over a corpus of requests.
    """
    from moto.core.request import (
        PRESERVED_HEADER_NAMES_ENVIRON_KEY,
        Request,
        environ_key_for_header,
        should_preserve_original_header_name,
    )

    if not body or any(name.lower() == "transfer-encoding" for name, _ in headers):
        from werkzeug.datastructures import Headers

        return Request.from_primitives(method, url, Headers(headers), body)
    base = _ENVIRONS.get((method, url))
    if base is None:
        from urllib.parse import urlparse

        from werkzeug.test import EnvironBuilder

        parsed = urlparse(url)
        built = EnvironBuilder(method=method, base_url=f"{parsed.scheme}://{parsed.netloc}", path=parsed.path,
                               query_string=parsed.query, data=b"-").get_environ()
        base = {key: value for key, value in built.items()
                if key not in ("CONTENT_TYPE", "CONTENT_LENGTH", "wsgi.input")
                and (not key.startswith("HTTP_") or key == "HTTP_HOST")}
        if len(_ENVIRONS) > 1024:
            _ENVIRONS.clear()
        _ENVIRONS[(method, url)] = base
    environ = dict(base)
    environ["wsgi.input"] = BytesIO(body)
    content_type: str | None = None
    combined: dict[str, list[str]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower == "content-type":
            if content_type is None:
                content_type = value
            continue
        if lower == "content-length":
            continue
        combined.setdefault(f"HTTP_{name.upper().replace('-', '_')}", []).append(value)
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    environ["CONTENT_LENGTH"] = str(len(body))
    for key, values in combined.items():
        environ[key] = ", ".join(values)
    request = _door_request_class()(environ)
    request.environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = {
        environ_key_for_header(name): name for name, _ in headers if should_preserve_original_header_name(name)
    }
    return request


def fast_random_strings() -> None:
    """moto's ``get_random_string`` with one ``choices`` call instead of a ``choice`` per character.

    Every DynamoDB answer carries a 52-character request id made this way: 52 calls into ``random``
    were ~8 % of moto's CPU per call.  Same alphabet, length and (seeded) generator. Idempotent.
    """
    import string

    from moto.moto_api._internal.moto_random import MotoRandom

    if getattr(MotoRandom.get_random_string, "__fast__", False):
        return

    def get_random_string(self: Any, length: int = 20, include_digits: bool = True, lower_case: bool = False) -> str:
        pool = string.ascii_letters + (string.digits if include_digits else "")
        text = "".join(self.choices(pool, k=length))
        return text.lower() if lower_case else text

    get_random_string.__fast__ = True  # type: ignore[attr-defined]
    MotoRandom.get_random_string = get_random_string  # type: ignore[method-assign]
