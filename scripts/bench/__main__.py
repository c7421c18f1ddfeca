"""`make bench`: run every benchmark and print Markdown to paste into docs/benchmarks.md."""

from __future__ import annotations

import platform
import sys

from . import imports


def main() -> None:
    print(f"<!-- python {platform.python_version()} on {platform.machine()}, {sys.platform} -->")
    print("## Cold start: handler import time\n")
    print(imports.main())


if __name__ == "__main__":
    main()
