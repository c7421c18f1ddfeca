"""Queue PRDs for a full re-index (current document and every version) after the index was lost, or
the engine or embedding model changed:

    SEARCH_QUEUE_URL=… PRDS_TABLE=… python -m prdtool.search.reindex            # every PRD
    SEARCH_QUEUE_URL=… PRDS_TABLE=… python -m prdtool.search.reindex <id> …     # these

The indexing worker does the work (in batches, with its retries and DLQ); this only sends messages.
"""

from __future__ import annotations

import sys

from .indexer import reindex


def main(argv: list[str]) -> int:
    count = reindex(argv or None)
    print(f"queued {count} PRD(s) for re-indexing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
