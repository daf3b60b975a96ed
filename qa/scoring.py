"""Score arithmetic shared by ranking and highlighting."""

from __future__ import annotations

import numpy as np

__all__ = ["scaled", "zscores"]


def zscores(values: np.ndarray, pool: np.ndarray | None = None) -> np.ndarray:
    """(values - mean) / std, mean and std taken over `pool` (a boolean mask; all values when None). Unlike
    min-max scaling, one outlier does not squash everyone else. All zeros when the pool does not vary."""
    ref = values if pool is None else values[pool]
    mean, std = float(ref.mean()), float(ref.std())
    return (values - mean) / std if std > 0 else np.zeros_like(values)


def scaled(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Min-max scaled over `pool` and clipped to [0, 1]; a constant pool gives all ones (or zeros if not above 0)."""
    low, high = float(values[pool].min()), float(values[pool].max())
    if high <= low:
        return np.ones_like(values) if high > 0 else np.zeros_like(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0)
