"""The models every benchmark target serves, shared so that each stack runs the same code.

Standard library only: the peers import this file from their own virtual environments
(``bench/peers/*`` put ``bench/`` on ``sys.path``), and our frontend ships it as a cloudpickled closure.

- ``sum_batch``: the trivial model of issue 8, the sum of each input vector.
- ``slow_batch``: a model whose every call costs ``SLOW_FIXED_S`` (slept, like an I/O or kernel-launch
  overhead) plus ``SLOW_PER_INPUT_S`` of CPU per input, so that batching pays off measurably.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

SLOW_FIXED_S = 0.002
SLOW_PER_INPUT_S = 20e-6

#: The body every load generator posts (the issue's request).
SUM_INPUT = [1.1, 2.2, 3.3, 4.4]


def sum_one(x: Iterable[float]) -> float:
    return float(sum(x))


def sum_batch(inputs: Sequence[Iterable[float]]) -> list[str]:
    """Clipper closure convention: a batch of inputs in, one string per input out."""
    return [str(sum_one(x)) for x in inputs]


def spin(seconds: float) -> None:
    """Burn CPU (not sleep) for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def slow_cost(batch_len: int) -> None:
    """The cost of one call of the slow model on a batch of ``batch_len`` inputs."""
    time.sleep(SLOW_FIXED_S)
    spin(SLOW_PER_INPUT_S * batch_len)


def slow_batch(inputs: Sequence[Iterable[float]]) -> list[str]:
    slow_cost(len(inputs))
    return [str(sum_one(x)) for x in inputs]
