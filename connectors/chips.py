"""Canonical chip keys (pure): one name for each chip everywhere — offers, flavors, demands, images.

`canonical_chip("A100")`, `canonical_chip("NVIDIA A100")`, `canonical_chip("nvidia_a100")` and
`canonical_chip("nvidia-a100")` all give `nvidia-a100`, the chip catalogue's key. A name matches a
chip when, ignoring case and everything but letters and digits, it equals the chip's key, one of
its `aliases` in connectors/data/chips.toml, its model, or any of those after its vendor. `cpu`
names CPU-only flavors. An unknown name raises `UnknownChip`; it is never guessed (no prefix
matching: `H20` is not `H200`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from connectors.errors import UnknownChip
from connectors.metric import CPU_CHIP, ChipSpec, load_chips


def fold(name: str) -> str:
    """A name reduced to what matching compares: lower-case letters and digits only."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def alias_table(chips: Mapping[str, ChipSpec]) -> dict[str, str]:
    """Every folded name of every chip → its key; two chips answering to one name is an error."""
    table: dict[str, str] = {fold(CPU_CHIP): CPU_CHIP}
    for spec in chips.values():
        names = {spec.key, spec.model, *spec.aliases}
        names |= {f"{spec.vendor} {name}" for name in names}
        for name in names:
            folded = fold(name)
            if not folded:
                continue
            owner = table.setdefault(folded, spec.key)
            if owner != spec.key:
                raise UnknownChip(f"the chip name {name!r} is claimed by both {owner!r} and {spec.key!r}")
    return table


@cache
def _shipped_table() -> dict[str, str]:
    return alias_table(load_chips())


def canonical_chip(name: str, chips: Mapping[str, ChipSpec] | None = None) -> str:
    """The catalogue key of the chip `name` names (or `cpu`); UnknownChip if none does."""
    table = _shipped_table() if chips is None else alias_table(chips)
    if not isinstance(name, str) or len(name) > 200:
        raise UnknownChip("a chip name is a string of at most 200 characters")
    key = table.get(fold(name))
    if key is None:
        known = sorted({*table.values()})
        raise UnknownChip(f"unknown chip {name!r}; known chips: {', '.join(known)}")
    return key
