"""Framework images (训推框架): which image of which framework runs on which chip (pure).

`load_images()` reads connectors/data/frameworks.toml: per image its framework, version (PEP 440),
the chip software stack it targets (cuda, cann, mlu, dcu, xpu, cpu), its reference and the public
page it comes from; an entry without a source is refused. `resolve("pytorch>=2.4", chip)` picks,
for the chip's stack (from chips.toml, via its canonical key), the highest version the specifier
allows and answers the `Image`, or `NoImage` with a reason: `bad_spec`, `unknown_framework`,
`unknown_chip`, `no_image_for_chip` (the framework has no build for that stack) or
`no_matching_version` (it has, but none the specifier allows). Version specifiers use `packaging`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from connectors.chips import canonical_chip
from connectors.errors import MetricError, UnknownChip
from connectors.metric import CPU_CHIP, STACKS, load_chips

IMAGES_FILE = Path(__file__).with_name("data") / "frameworks.toml"
IMAGE_STACKS = (*STACKS, "cpu")
NoImageReason = Literal[
    "bad_spec", "unknown_framework", "unknown_chip", "no_image_for_chip", "no_matching_version"
]


@dataclass(frozen=True)
class Image:
    """One published framework image."""

    framework: str
    version: str
    stack: str
    reference: str
    source: str
    note: str = ""


@dataclass(frozen=True)
class NoImage:
    """Why no image fits: a reason code and a message for people."""

    reason: NoImageReason
    message: str


@dataclass(frozen=True)
class ImageCatalogue:
    """Every image, and the other names frameworks go by (`torch` → `pytorch`)."""

    images: tuple[Image, ...]
    aliases: Mapping[str, str]


def _text(entry: Mapping[str, Any], name: str, where: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value.strip():
        raise MetricError(f"{where}: '{name}' must be a non-empty string")
    return value


def parse_images(data: Mapping[str, Any]) -> ImageCatalogue:
    """Validate the catalogue's TOML data, or raise MetricError naming the entry and field."""
    entries = data.get("image")
    if not isinstance(entries, list) or not entries:
        raise MetricError("framework catalogue has no [[image]] entries")
    images: list[Image] = []
    seen: set[tuple[str, str, str, str]] = set()
    for index, entry in enumerate(entries):
        where = f"image.{index}"
        unknown = set(entry) - {"framework", "version", "stack", "reference", "source", "note"}
        if unknown:
            raise MetricError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        framework = canonicalize_name(_text(entry, "framework", where))
        version = _text(entry, "version", where)
        try:
            Version(version)
        except InvalidVersion:
            raise MetricError(f"{where}: version {version!r} is not a PEP 440 version") from None
        stack = _text(entry, "stack", where)
        if stack not in IMAGE_STACKS:
            raise MetricError(f"{where}: stack must be one of {', '.join(IMAGE_STACKS)}, got {stack!r}")
        source = entry.get("source")
        if not isinstance(source, str) or not source.startswith("https://"):
            raise MetricError(f"{where}: every image needs its public source (an https:// URL)")
        image = Image(
            framework, version, stack, _text(entry, "reference", where), source, str(entry.get("note", ""))
        )
        key = (framework, version, stack, image.reference)
        if key in seen:
            raise MetricError(
                f"{where}: {framework} {version} for {stack} ({image.reference}) is listed twice"
            )
        seen.add(key)
        images.append(image)
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise MetricError("[aliases] must map names to framework names")
    known = {image.framework for image in images}
    folded: dict[str, str] = {
        str(canonicalize_name(k)): str(canonicalize_name(v)) for k, v in aliases.items()
    }
    if not set(folded.values()) <= known:
        raise MetricError(
            f"[aliases] name frameworks that have no image: {sorted(set(folded.values()) - known)}"
        )
    return ImageCatalogue(tuple(images), folded)


@cache
def load_images(path: Path = IMAGES_FILE) -> ImageCatalogue:
    """The framework catalogue shipped with cpnode (read once)."""
    with path.open("rb") as handle:
        return parse_images(tomllib.load(handle))


def parse_framework(spec: str) -> tuple[str, Requirement]:
    """The framework name (canonical) and requirement of a spec like `pytorch>=2.4`; ValueError if malformed."""
    if not isinstance(spec, str) or not spec.strip() or len(spec) > 200:
        raise ValueError(
            "a framework spec is a name with an optional version constraint, e.g. 'pytorch>=2.4'"
        )
    try:
        requirement = Requirement(spec)
    except InvalidRequirement as exc:
        raise ValueError(f"{spec!r} is not a framework spec like 'pytorch>=2.4': {exc}") from None
    if requirement.url or requirement.marker or requirement.extras:
        raise ValueError(f"{spec!r}: only a name and version constraints are allowed")
    return canonicalize_name(requirement.name), requirement


def check_framework(spec: str) -> str:
    """`spec` if it is a framework spec (`pytorch>=2.4`); ValueError naming what is wrong (for validators)."""
    parse_framework(spec)
    return spec


def chip_stack(chip: str) -> str:
    """The software stack images must target for a chip (its canonical key's `stack`, or `cpu`)."""
    key = canonical_chip(chip)
    return CPU_CHIP if key == CPU_CHIP else load_chips()[key].stack


def resolve(spec: str, chip: str, catalogue: ImageCatalogue | None = None) -> Image | NoImage:
    """The image to run `spec` (e.g. `pytorch>=2.4`) on `chip`: the highest allowed version built for
    the chip's stack, or NoImage saying why there is none."""
    images = load_images() if catalogue is None else catalogue
    try:
        name, requirement = parse_framework(spec)
    except ValueError as exc:
        return NoImage("bad_spec", str(exc))
    name = images.aliases.get(name, name)
    of_framework = [image for image in images.images if image.framework == name]
    if not of_framework:
        known = ", ".join(sorted({image.framework for image in images.images}))
        return NoImage("unknown_framework", f"no images of framework {name!r} are known (known: {known})")
    try:
        stack = chip_stack(chip)
    except UnknownChip as exc:
        return NoImage("unknown_chip", str(exc))
    built = [image for image in of_framework if image.stack == stack]
    if not built:
        return NoImage("no_image_for_chip", f"{name} has no image for {chip} ({stack})")
    allowed = [image for image in built if requirement.specifier.contains(image.version, prereleases=True)]
    if not allowed:
        versions = ", ".join(sorted({image.version for image in built}, key=Version))
        return NoImage(
            "no_matching_version", f"{name} for {stack} comes in {versions}; none satisfies {spec!r}"
        )
    return max(allowed, key=lambda image: Version(image.version))


def frameworks_for(chip: str, catalogue: ImageCatalogue | None = None) -> Sequence[Image]:
    """Every image that runs on `chip`'s stack, by framework then version."""
    images = load_images() if catalogue is None else catalogue
    stack = chip_stack(chip)
    found = [image for image in images.images if image.stack == stack]
    return sorted(found, key=lambda image: (image.framework, Version(image.version)))
