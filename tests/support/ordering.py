"""The order tests are handed to pytest-xdist's workers in, so that no long test sets the end of the run.

`--dist worksteal` gives each of W workers one contiguous share of the collection (the first
`N // W` tests to the first worker, and so on), and a worker that runs dry takes the back half of
the longest queue left. A test of a minute or more that sits late in its share starts late, and
the run waits for it alone. `spread_first` puts the tests marked `long` at the head of the shares,
one per worker in turn, and keeps every other test in collection order (modules stay together, so
their module-scoped fixtures are set up once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def share_sizes(count: int, workers: int) -> list[int]:
    """How many of `count` tests each of `workers` receives first, as pytest-xdist's worksteal
    scheduler deals them (each worker in turn gets what is left divided by the workers left)."""
    sizes = []
    left = count
    for remaining in range(workers, 0, -1):
        sizes.append(left // remaining)
        left -= sizes[-1]
    return sizes


def spread_first(items: Sequence[T], workers: int, is_long: Callable[[T], bool]) -> list[T]:
    """`items` reordered so that the long ones open the workers' shares, dealt round robin in their
    collection order; the rest follow in collection order. With one worker, nothing moves."""
    if workers <= 1:
        return list(items)
    long = [item for item in items if is_long(item)]
    rest = [item for item in items if not is_long(item)]
    heads: list[list[T]] = [long[worker::workers] for worker in range(workers)]
    ordered: list[T] = []
    for worker, size in enumerate(share_sizes(len(items), workers)):
        share = heads[worker][:size]
        fill = size - len(share)
        share += rest[:fill]
        del rest[:fill]
        ordered += share
    # Long tests beyond what the shares hold (more long tests than a share's size) go last.
    placed = {id(item) for item in ordered}
    ordered += [item for item in long if id(item) not in placed] + rest
    return ordered
