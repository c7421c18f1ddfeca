"""``python -m scripts.localstack [--port N] [--reset] [--state-dir DIR]``: what ``make dev`` runs.

Runs the whole product on loopback in the foreground until Ctrl-C or SIGTERM, then stops cleanly
(state saved, no traceback).  The data people create survives restarts, and crashes, in
``.local/state`` (git-ignored; ``--state-dir`` for another folder); ``--reset`` deletes it first.
A killed run leaves nothing running that would block the next one.  Environment: ``PORT`` (default
3000), ``MOTO_PORT`` (default PORT + 1), and the runtime's ``LOCAL_*`` knobs (``RuntimeSettings``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from scripts.localstack.seed import DEMO_PASSWORD
from scripts.localstack.stack import LocalStack, RuntimeSettings, StackError

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = REPO_ROOT / ".local" / "state"


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return port


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM stops the stack the way Ctrl-C does.
    raise KeyboardInterrupt


def _banner(stack: LocalStack) -> str:
    port = stack.base_url.rsplit(":", 1)[-1]
    return "\n".join(
        [
            "",
            "PRD Tool is running",
            f"  web client   http://localhost:{port}/",
            f"  HTTP API     http://localhost:{port}/api",
            f"  WebSocket    ws://localhost:{port}/ws",
            f"  AWS (moto)   {stack.moto_url}",
            f"  demo logins  alice, bob (editors), carol (viewer); password {DEMO_PASSWORD}",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.localstack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=_port, default=None, help="gateway port (default: $PORT or 3000)")
    parser.add_argument("--reset", action="store_true", help="delete the saved local data first")
    parser.add_argument(
        "--state-dir", type=Path, default=STATE_DIR, help=f"where the local data is kept (default: {STATE_DIR})"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )

    try:
        port = args.port or _port(os.environ.get("PORT", "3000"))
        moto_port = _port(os.environ["MOTO_PORT"]) if os.environ.get("MOTO_PORT") else None
        settings = RuntimeSettings.from_env()
    except (ValueError, argparse.ArgumentTypeError, StackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # --reset empties the folder once the stack holds its lock: never under another running stack.
    stack = LocalStack(
        REPO_ROOT,
        port=port,
        moto_port=moto_port,
        state_dir=args.state_dir.resolve(),
        settings=settings,
        reset=args.reset,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start()
        print(_banner(stack), flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr, flush=True)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not interrupt the shutdown (and the save of the local data).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
