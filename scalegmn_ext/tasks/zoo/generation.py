"""What the zoo generators (:mod:`.inr`, :mod:`.cnn`) share: worker threads that each train
their own batch of networks, the check of the stored split's fractions, and summary statistics."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

__all__ = [
    "Cancelled",
    "parallel_map",
    "default_workers",
    "single_threaded_ops",
    "check_split_fractions",
    "summary_stats",
]

T = TypeVar("T")
R = TypeVar("R")


@contextlib.contextmanager
def single_threaded_ops(active: bool = True):
    """Run torch ops single-threaded inside (restored afterwards): parallelism then comes from
    worker threads that each fit/train their own batch of networks (see :func:`parallel_map`)."""
    n = torch.get_num_threads()
    if active:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if active:
            torch.set_num_threads(n)


class Cancelled(Exception):
    """Raised inside a worker when another worker failed or the run was interrupted."""


def parallel_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, stop: threading.Event | None = None
) -> list[R]:
    """``[fn(i) for i in items]`` on ``workers`` threads (in order; serial for one worker).

    Coarse-grained parallelism (each thread runs whole small-network batches with single-threaded
    ops) is bitwise identical to the serial result, and unlike per-op intra-op threading it does
    not stall when other processes share the cores. If one item fails (or the main thread is
    interrupted), ``stop`` is set so that running items can bail out at their next progress
    callback (raising :class:`Cancelled`), pending items are cancelled, and the first error is raised.
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    stop = stop if stop is not None else threading.Event()
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as ex:
        futures = [ex.submit(fn, i) for i in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            stop.set()
            for f in futures:
                f.cancel()
            raise


def default_workers(device) -> int:
    """Worker threads for zoo generation: torch's intra-op thread count on CPU, 1 elsewhere."""
    return max(1, torch.get_num_threads()) if torch.device(device).type == "cpu" else 1


def check_split_fractions(split_fractions: Sequence[float]) -> dict[str, float]:
    """``{"train": f, "val": f, "test": f}`` from three non-negative fractions summing to 1."""
    if len(split_fractions) != 3 or any(f < 0 for f in split_fractions) or abs(sum(split_fractions) - 1) > 1e-6:
        raise ValueError(
            f"split_fractions must be three non-negative numbers (train, val, test) summing to 1, "
            f"got {tuple(split_fractions)}"
        )
    return dict(zip(("train", "val", "test"), map(float, split_fractions)))


def summary_stats(v: np.ndarray) -> dict:
    """Count, mean, std, min, 10/50/90th percentiles and max of ``v`` (only the count when empty)."""
    if v.size == 0:
        return {"count": 0}
    q = np.percentile(v, [10, 50, 90])
    return {
        "count": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "p10": float(q[0]),
        "median": float(q[1]),
        "p90": float(q[2]),
        "max": float(v.max()),
    }
