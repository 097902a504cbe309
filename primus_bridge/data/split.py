"""Deterministic train/valid/test split by sample, the same on every run and machine.

Each record's ordinal (its position in the input) is hashed with data.seed by the splitmix64 mixer, in plain
uint64 arithmetic, so the assignment depends on nothing but the seed and the input order: not on the numpy
version, the machine, or which other records were skipped.
"""

import numpy as np

from .errors import DataError

SPLIT_NAMES = ("train", "valid", "test")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(values: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of (seed, value) for each uint64 value."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Samples per split; a split with a non-zero share gets at least one sample."""
    def share(f: float) -> int:
        return 0 if f <= 0 else max(1, round(n * f))

    valid, test = share(fractions[1]), share(fractions[2])
    train = n - valid - test
    if train < 1 and fractions[0] > 0:
        raise DataError("data.split", f"too few usable samples ({n}) for the split "
                                      f"{'/'.join(f'{f:.0%}' for f in fractions)}; add data or change data.split",
                        "too few samples")
    return train, valid, test


def split_documents(ordinals: np.ndarray, fractions: tuple[float, float, float], seed: int) -> list[np.ndarray]:
    """Document indices of each split, ascending."""
    counts = split_counts(len(ordinals), fractions)
    order = np.argsort(mix64(ordinals, seed), kind="stable")
    bounds = np.cumsum((0,) + counts)
    return [np.sort(order[bounds[i]:bounds[i + 1]]) for i in range(3)]
