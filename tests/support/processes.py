"""Which tests start processes, read from their code: `make test-fast` leaves those out.

A test starts processes when its code, a fixture it uses, or a helper in `tests/` that either
calls reaches `subprocess`, `asyncio.create_subprocess_*`, `multiprocessing`, `os.fork` or one of
the process wrappers (`NodeProcess`, ...). The conftest hook marks such tests `slow`, so no one
has to remember the mark.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Any

import pytest

# Names whose use in a test's code means a process is started.
STARTERS = frozenset(
    {
        "subprocess",
        "Popen",
        "create_subprocess_exec",
        "create_subprocess_shell",
        "multiprocessing",
        "ProcessPoolExecutor",
        "fork",
        "NodeProcess",
    }
)


def _names(code: CodeType) -> Iterator[str]:
    """Every global or attribute name `code` (and the functions nested in it) refers to."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _names(const)


def _in_tests(value: Any) -> bool:
    """A function or class defined in the test suite (helpers are followed, library code is not)."""
    return (inspect.isfunction(value) or inspect.isclass(value)) and str(
        getattr(value, "__module__", "")
    ).startswith("tests")


def _functions(value: Any) -> Iterator[Callable[..., Any]]:
    """`value` itself if it is a function, or the functions a class defines."""
    target = inspect.unwrap(value) if callable(value) else value
    if inspect.isfunction(target):
        yield target
    elif inspect.isclass(target):
        for member in vars(target).values():
            inner = member.__func__ if isinstance(member, staticmethod | classmethod) else member
            if inspect.isfunction(inner):
                yield inner


def starts_processes(value: Any, seen: set[int] | None = None) -> bool:
    """Whether `value` (a test, fixture, helper function or class) starts a process, directly or
    through helpers defined in `tests/`."""
    seen = set() if seen is None else seen
    for function in _functions(value):
        if id(function) in seen:
            continue
        seen.add(id(function))
        scope = function.__globals__
        for name in _names(function.__code__):
            if name in STARTERS:
                return True
            helper = scope.get(name)
            if _in_tests(helper) and starts_processes(helper, seen):
                return True
    return False


def uses_processes(item: pytest.Function, known: dict[int, bool]) -> bool:
    """Whether the test `item` or a fixture it uses starts a process (`known` keeps each function's
    answer across the items of one collection)."""
    functions = [item.function] + [
        definition.func
        for definitions in item._fixtureinfo.name2fixturedefs.values()
        for definition in definitions
    ]
    for function in functions:
        if id(function) not in known:
            known[id(function)] = starts_processes(function)
        if known[id(function)]:
            return True
    return False
