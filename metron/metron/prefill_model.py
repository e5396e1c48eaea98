"""Prefill time against prompt length, fitted from TTFTs measured at concurrency 1.

The model is `intercept + per_token * L + per_token_squared * L**2` with every coefficient
non-negative: the linear term is the projections and MLP, the quadratic one attention. Fitted by
non-negative least squares, it stays increasing and convex past the longest measured prompt
instead of going flat or negative, so it extrapolates the way the hardware does.
"""

import itertools
from collections.abc import Sequence

import msgspec
import numpy as np


class PrefillModel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    intercept_s: float
    per_token_s: float
    per_token_squared_s: float

    def __post_init__(self) -> None:
        for name in ("intercept_s", "per_token_s", "per_token_squared_s"):
            value = getattr(self, name)
            if not (value >= 0 and np.isfinite(value)):
                raise ValueError(f"prefill model coefficient {name} must be a finite number >= 0, got {value}")

    def predict_s(self, prompt_tokens: int | float) -> float:
        length = float(prompt_tokens)
        return self.intercept_s + self.per_token_s * length + self.per_token_squared_s * length * length


def fit_prefill_model(prompt_tokens: Sequence[float], ttft_s: Sequence[float]) -> PrefillModel:
    """Least squares over every (length, TTFT) sample, coefficients constrained to be >= 0."""
    lengths = np.asarray(prompt_tokens, dtype=np.float64)
    times = np.asarray(ttft_s, dtype=np.float64)
    if lengths.shape != times.shape or lengths.ndim != 1:
        raise ValueError("prompt_tokens and ttft_s must be two lists of the same length")
    if len(np.unique(lengths)) < 2:
        raise ValueError("fitting a prefill model needs samples at two or more prompt lengths")
    if np.any(lengths < 0) or np.any(~np.isfinite(times)) or np.any(times < 0):
        raise ValueError("prompt lengths and TTFTs must be finite and non-negative")
    coefficients = nonnegative_least_squares(np.stack([np.ones_like(lengths), lengths, lengths**2], axis=1), times)
    return PrefillModel(
        intercept_s=float(coefficients[0]),
        per_token_s=float(coefficients[1]),
        per_token_squared_s=float(coefficients[2]),
    )


def nonnegative_least_squares(columns: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The coefficients >= 0 that minimise |columns @ coefficients - targets|: least squares on
    every subset of the columns that may be non-zero, the best solution with no negative
    coefficient (exact for the few columns these models have; columns scaled to a maximum of 1
    first, so seconds and squared token counts condition alike). All zero where nothing fits."""
    num_columns = columns.shape[1]
    scale = np.abs(columns).max(axis=0)
    scale[scale == 0] = 1.0
    scaled = columns / scale
    best: tuple[float, np.ndarray] = (float(np.sum(targets**2)), np.zeros(num_columns))
    for size in range(1, num_columns + 1):
        for active in itertools.combinations(range(num_columns), size):
            solution, *_ = np.linalg.lstsq(scaled[:, active], targets, rcond=None)
            if np.any(solution < 0):
                continue
            coefficients = np.zeros(num_columns)
            coefficients[list(active)] = solution
            residual = float(np.sum((scaled @ coefficients - targets) ** 2))
            if residual < best[0]:
                best = (residual, coefficients)
    return best[1] / scale
