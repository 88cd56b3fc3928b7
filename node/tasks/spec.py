"""A consumer's task spec (任务封装: program + data metadata), checked whole before anything runs.

A spec is a TOML or JSON object (examples in configs/tasks/):

    [program]                       # what runs: exactly one way
    command = ["python3", "train.py"]         # an argv, or
    framework = "pytorch>=2.4"                # a framework, resolved to an image per chip, or
    image = "registry/x:1"                    # an image (`framework` may then name what it provides)
    env = { SEED = "7" }
    [[inputs]]                      # fetched into the working directory before start, checked
    url = "https://example.org/train.py"
    path = "train.py"
    size_bytes = 1234
    sha256 = "<64 hex>"
    outputs = ["out"]               # paths (files or directories) to keep when it ends
    max_duration_s = 600            # the pool stops it then
    [resources]                     # a market demand (node.market.demand), or an offer:
    units = 1                       #   offer_id = "pool/region/flavor", source = "own", units, hours
    hours = 1

`parse_task_spec` returns a frozen `TaskSpec` or raises `TaskSpecError` naming the first bad
field by its path (`program.command`, `inputs.0.sha256`, `resources.units`). `to_program()` gives
the connectors' `Program`; a framework must be resolved to an `Image` for the chip first
(`connectors.frameworks.resolve`). Pure: no I/O beyond reading a given file.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
)

from connectors.contract import InputFile, Program, RelativePath
from connectors.frameworks import Image, check_framework, parse_framework
from node.errors import FieldError
from node.market.demand import Demand, parse_demand
from node.market.errors import DemandError
from node.trading.rules import MAX_HOURS, MAX_UNITS

MAX_SPEC_BYTES = 1 << 20
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class TaskSpecError(FieldError, code="bad_task_spec"):
    """A task spec that cannot run as written; `field` is the path of the first bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProgramSpec(_Strict):
    """What runs: a command, a framework to resolve per chip, or an image; and its environment."""

    command: list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]] | None = Field(
        default=None, min_length=1, max_length=4096
    )
    framework: (
        Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(check_framework)]
        | None
    ) = None
    image: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    env: dict[EnvName, Annotated[str, StringConstraints(max_length=32_768)]] = Field(
        default={}, max_length=256
    )


class OfferResources(_Strict):
    """Resources as a named offer of the merged offer view (as `POST /api/v1/orders` takes it)."""

    offer_id: str = Field(min_length=1, max_length=200)
    source: str = Field(default="own", min_length=1, max_length=80)
    units: StrictInt = Field(ge=1, le=MAX_UNITS)
    hours: StrictInt = Field(ge=1, le=MAX_HOURS)


class _SpecBody(_Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")] | None = None
    program: ProgramSpec
    inputs: list[InputFile] = Field(default=[], max_length=256)
    outputs: list[RelativePath] = Field(default=[], max_length=256)
    max_duration_s: StrictInt | None = Field(default=None, ge=1, le=366 * 24 * 3600)
    resources: dict[str, Any]


class TaskSpec(_Strict):
    """A checked task spec: the program, its data, its limits, and either a demand or an offer."""

    name: str | None
    program: ProgramSpec
    inputs: tuple[InputFile, ...]
    outputs: tuple[str, ...]
    max_duration_s: int | None
    demand: Demand | None
    offer: OfferResources | None

    @property
    def framework(self) -> str | None:
        """The framework spec to resolve per chip (`pytorch>=2.4`), or None when the program is fixed."""
        return self.program.framework if self.program.image is None else None

    def to_program(self, image: Image | None = None) -> Program:
        """The connectors' Program; a spec naming a framework needs the image resolved for its chip."""
        reference: str | None
        provides: str | None
        if self.framework is not None:
            if image is None:
                raise ValueError("resolve the framework to an image for the chip before building the program")
            reference, provides = image.reference, image.framework
        elif self.program.image is not None:
            reference, provides = self.program.image, self.program.framework
        else:
            reference, provides = None, None
        return Program(
            command=self.program.command,
            image=reference,
            framework=provides,
            env=self.program.env,
            inputs=list(self.inputs),
            outputs=list(self.outputs),
            max_duration_s=self.max_duration_s,
        )


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "spec"


def _program_rules(program: ProgramSpec) -> None:
    if program.framework is not None and program.image is None:
        return
    if program.image is not None:
        if program.framework is not None:
            _name, requirement = parse_framework(program.framework)
            if str(requirement.specifier):
                raise TaskSpecError(
                    "program.framework", "with an image, name the framework it provides without versions"
                )
        return
    if not program.command:
        raise TaskSpecError("program", "give a command, a framework or an image")


def parse_task_spec(data: Any) -> TaskSpec:
    """A `TaskSpec` from a JSON value; `TaskSpecError` naming the first bad field otherwise."""
    if not isinstance(data, dict):
        raise TaskSpecError("spec", "must be an object")
    try:
        body = _SpecBody.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        raise TaskSpecError(_path(first["loc"]), message) from None
    _program_rules(body.program)
    if len({item.path for item in body.inputs}) != len(body.inputs):
        raise TaskSpecError("inputs", "two inputs name the same path")
    demand: Demand | None = None
    offer: OfferResources | None = None
    if "offer_id" in body.resources:
        try:
            offer = OfferResources.model_validate(body.resources)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise TaskSpecError(_path(("resources", *first["loc"])), str(first["msg"])) from None
    else:
        try:
            demand = parse_demand(body.resources)
        except DemandError as exc:
            raise TaskSpecError(f"resources.{exc.field}", exc.reason) from None
    return TaskSpec(
        name=body.name,
        program=body.program,
        inputs=tuple(body.inputs),
        outputs=tuple(body.outputs),
        max_duration_s=body.max_duration_s,
        demand=demand,
        offer=offer,
    )


def loads_task_spec(text: str, form: str) -> TaskSpec:
    """Parse a spec written as `toml` or `json`."""
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise TaskSpecError("spec", f"is larger than {MAX_SPEC_BYTES} bytes")
    try:
        data = tomllib.loads(text) if form == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise TaskSpecError("spec", f"is not valid {form.upper()}: {exc}") from None
    return parse_task_spec(data)


def read_task_spec(path: Path) -> TaskSpec:
    """Read a spec file (`.toml`, else JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskSpecError("spec", f"cannot read {path}: {exc}") from None
    return loads_task_spec(text, "toml" if path.suffix == ".toml" else "json")
