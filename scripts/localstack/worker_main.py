"""One warm Lambda execution environment: the child process that ``workers.py`` starts.

The parent runs this file by path (``python -P worker_main.py ...``) so that the child's
``sys.path`` holds only what a Lambda container's does: the task root (the function's code),
the layers, and the interpreter's own site-packages.  It imports the handler once (Lambda's
init phase), then serves invocations one at a time until the parent closes the IPC socket, so
module state survives between invocations exactly as in a warm container.

IPC travels over a dedicated socket (``--ipc-fd``), never over stdout/stderr: whatever the
handler prints goes to the parent as plain log output and cannot corrupt a result.  Messages are
length-prefixed JSON (see :func:`encode_frame`).  Only the standard library is used here so the
child imports nothing from this repository.

With ``--moto-door`` / ``--gateway-door`` (``workers.py`` passes them unless ``LOCAL_DOORS=0``) the
process carries its botocore traffic to moto and to ``@connections`` over unix sockets instead of
loopback HTTP (``door.py``): only ``URLLib3Session.send`` is replaced, when botocore is first
imported, so everything the function's code and botocore do above the transport is unchanged.
``door.py`` is loaded by path, under a private name: the function's ``sys.path`` stays as in Lambda.

The process exits as soon as the orchestrator is gone, however it ended (``--lifeline-fd``, see
:func:`exit_with_parent`), even in the middle of an invocation: a ``kill -9`` of ``make dev`` must
not leave workers behind.  ``--stack-id`` only marks the process as part of one start of the local
stack, so that the next start can recognise leftovers (``stack.StackLock``).
"""

from __future__ import annotations

import argparse
import contextlib
import decimal
import importlib
import importlib.util
import json
import os
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

FRAME_HEADER = struct.Struct(">I")
PARENT_GONE_STATUS = 1

Handler = Callable[[Any, "LambdaContext"], Any]


def exit_with_parent(lifeline_fd: int) -> threading.Thread:
    """Exit this process at once when the parent process is gone, whatever killed it.

    ``lifeline_fd`` is the read end of a pipe whose only write end the parent holds and never
    writes to: when the parent process ends — cleanly, by a crash or by SIGKILL — the kernel closes
    that end and the read returns end-of-file.  Unlike ``PR_SET_PDEATHSIG`` this follows the parent
    *process*, not the thread that forked us (the runtime forks workers from its asyncio thread,
    and moto is started from whatever thread calls ``LocalStack.start``), it needs no
    ``preexec_fn`` (unsafe in a threaded parent), has no window between fork and set-up (the pipe
    is inherited at the fork), and works on macOS too.  Its limit: the watching thread needs the
    GIL, so a handler stuck in C code that holds it is killed only when it lets go.
    """

    def watch() -> None:
        while True:
            try:
                if not os.read(lifeline_fd, 512):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        os._exit(PARENT_GONE_STATUS)  # no clean-up: the parent that would want it is gone

    thread = threading.Thread(target=watch, name="lifeline", daemon=True)
    thread.start()
    return thread


def encode_frame(message: dict[str, Any], default: Callable[[Any], Any] | None = None) -> bytes:
    """Serialise one IPC message: a 4-byte big-endian length, then UTF-8 JSON."""
    body = json.dumps(message, default=default, separators=(",", ":")).encode()
    return FRAME_HEADER.pack(len(body)) + body


class LambdaContext:
    """The context object of the Python Lambda runtime (``awslambdaric``), attribute for attribute.

    Like the real runtime it reads the function's identity from the environment, so
    ``memory_limit_in_mb`` is a string, as it is in AWS.
    """

    def __init__(self, request_id: str, invoked_function_arn: str, deadline_ms: int) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def error_object(exc: BaseException) -> dict[str, Any]:
    """Lambda's error payload: ``errorType``, ``errorMessage`` and the function's frames as ``stackTrace``.

    Like the real runtime, the leading frames of the runtime itself (this file) are left out.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    while frames and frames[0].filename == __file__:
        frames.pop(0)
    return {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": traceback.format_list(frames)}


def _log_error(error: dict[str, Any]) -> None:
    # The Python runtime writes every failure to the function's log in this form.
    line = f"[ERROR] {error['errorType']}: {error['errorMessage']}"
    if error["stackTrace"]:
        line += "\nTraceback (most recent call last):\n" + "".join(error["stackTrace"]).rstrip("\n")
    print(line, file=sys.stderr, flush=True)


def _json_default(value: Any) -> Any:
    # The Lambda runtime's marshaller accepts Decimal (DynamoDB numbers); so do we.
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def load_handler(handler: str) -> Handler:
    """Import ``module.attribute`` the way the runtime does, with the runtime's error types."""
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise _InitError("Runtime.MalformedHandlerName", f"Bad handler '{handler}': not enough values to unpack")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    except SyntaxError as exc:
        raise _InitError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}") from exc
    function: Handler | None = getattr(module, attribute, None)
    if function is None:
        raise _InitError("Runtime.HandlerNotFound", f"Handler '{attribute}' missing on module '{module_name}'")
    return function


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _init_error_object(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, _InitError):
        # The runtime's own init errors carry no stack trace of the runtime's internals.
        return {"errorType": exc.error_type, "errorMessage": str(exc), "stackTrace": []}
    return error_object(exc)  # module-level code of the function raised


class _Channel:
    """Blocking framed JSON over the IPC socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def receive(self) -> dict[str, Any] | None:
        """The next message, or None once the parent has closed the socket."""
        header = self._read_exactly(FRAME_HEADER.size)
        if header is None:
            return None
        (length,) = FRAME_HEADER.unpack(header)
        body = self._read_exactly(length)
        if body is None:
            return None
        message: dict[str, Any] = json.loads(body)
        return message

    def send(self, message: dict[str, Any], default: Callable[[Any], Any] | None = None) -> None:
        self._sock.sendall(encode_frame(message, default))

    def _read_exactly(self, size: int) -> bytes | None:
        buffer = bytearray()
        while len(buffer) < size:
            chunk = self._sock.recv(size - len(buffer))
            if not chunk:
                return None
            buffer += chunk
        return bytes(buffer)


def _load_door_module() -> ModuleType:
    """``door.py`` from beside this file, without adding the repository to ``sys.path``."""
    name = "_localstack_door"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("door.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def install_doors(moto_door: str | None, gateway_door: str | None, services: str | None) -> None:
    """Send this process's botocore requests for moto and ``@connections`` through the doors.

    Which requests go where is decided per request (``door.DoorRoutes``): those for the function's
    ``AWS_ENDPOINT_URL`` signed for a door-served service, and ``@connections`` calls to its
    ``WEBSOCKET_CALLBACK_URL``; everything else (S3, Cognito, anything elsewhere) keeps HTTP.
    """
    door = _load_door_module()
    routes = door.DoorRoutes(
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        services=frozenset(filter(None, (services or "").split(","))) if services is not None else door.MOTO_SERVICES,
        moto=door.DoorClient(moto_door) if moto_door else None,
        callback_url=os.environ.get("WEBSOCKET_CALLBACK_URL") or None,
        gateway=door.DoorClient(gateway_door) if gateway_door else None,
    )
    door.install_when_imported(door.BotocoreDoorTransport(routes))


def _invoke(channel: _Channel, handler: Handler, request: dict[str, Any]) -> None:
    request_id = request["request_id"]
    context = LambdaContext(request_id, request["invoked_function_arn"], request["deadline_ms"])
    try:
        result = handler(request["event"], context)
    except Exception as exc:  # any handler failure is the invocation's error result
        error = error_object(exc)
        _log_error(error)
        channel.send({"type": "error", "request_id": request_id, "error": error})
        return
    try:
        channel.send({"type": "result", "request_id": request_id, "payload": result}, default=_json_default)
    except (TypeError, ValueError) as exc:
        error = {
            "errorType": "Runtime.MarshalError",
            "errorMessage": f"Unable to marshal response: {exc}",
            "stackTrace": [],
        }
        _log_error(error)
        channel.send({"type": "error", "request_id": request_id, "error": error})


def run_when_idle() -> None:
    """Put this process on Linux's ``SCHED_IDLE`` policy (where the platform has it).

    A background function's worker (the doc writer's compaction, the search indexer's embeddings, the
    audit writer) competes for the same two or so cores as the keystroke's path — the gateway, the
    WebSocket function's workers, moto — where in AWS it would run on CPUs of its own.  Niceness
    (``workers.lower_priority``) ranks it lower but does not make a running background worker give way
    to a waking interactive process at once; under ``SCHED_IDLE`` the kernel preempts it as soon as an
    interactive process wakes on its CPU (and counts a CPU running only such work as idle when placing
    a waking one).  Measured: 50 editors at 2 edits/s, alternated in one stack six times each, p99
    24-82 ms (median 42) with it against 48-141 ms (median 78) without (docs/benchmarks.md).  Any
    process may lower itself to it; where the platform has no such policy, niceness alone ranks it."""
    with contextlib.suppress(AttributeError, OSError):  # no such policy here: niceness alone ranks it
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined,unused-ignore]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ipc-fd", type=int, required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--task-root", required=True)
    parser.add_argument("--layer", action="append", default=[])
    parser.add_argument("--lifeline-fd", type=int, help="exit when this pipe reaches end-of-file")
    parser.add_argument("--stack-id", help="marks the process as part of one start of the local stack")
    parser.add_argument("--moto-door", help="unix socket of moto's door (door.py)")
    parser.add_argument("--gateway-door", help="unix socket of the gateway's @connections door")
    parser.add_argument("--door-services", help="comma-separated signing names the moto door serves")
    parser.add_argument("--idle", action="store_true",
                        help="a background function's: run only on CPU time no other process wants (SCHED_IDLE)")
    args = parser.parse_args(argv)
    if args.idle:
        run_when_idle()  # first, so that every thread started from here on inherits it
    if args.lifeline_fd is not None:
        exit_with_parent(args.lifeline_fd)
    if args.moto_door or args.gateway_door:
        install_doors(args.moto_door, args.gateway_door, args.door_services)

    # Handler output reaches the dev log promptly, as it reaches CloudWatch in Lambda.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.path[:0] = [args.task_root, *args.layer]
    channel = _Channel(socket.socket(fileno=args.ipc_fd))

    try:
        handler = load_handler(args.handler)
    except Exception as exc:  # init failed: report it as the first invocation's error, as Lambda does
        error = _init_error_object(exc)
        _log_error(error)
        channel.send({"type": "init_error", "error": error})
        return 1
    channel.send({"type": "ready"})

    while (request := channel.receive()) is not None:
        _invoke(channel, handler, request)
    return 0


if __name__ == "__main__":
    sys.exit(main())
