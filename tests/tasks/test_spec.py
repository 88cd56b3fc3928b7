"""Task specs: the shipped examples parse, every bad field is named by its path, and `to_program`
builds the connectors' Program for a command, an image and a framework resolved per chip."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.frameworks import Image, resolve
from node.http.statuses import status_for
from node.tasks.spec import TaskSpec, TaskSpecError, loads_task_spec, parse_task_spec, read_task_spec

TASKS = Path(__file__).resolve().parents[2] / "configs" / "tasks"
SHA = "a" * 64
VALID: dict[str, Any] = {
    "name": "t",
    "program": {"command": ["python3", "run.py"], "env": {"SEED": "7"}},
    "inputs": [{"url": "https://example.org/run.py", "path": "run.py", "size_bytes": 10, "sha256": SHA}],
    "outputs": ["out", "log.txt"],
    "max_duration_s": 60,
    "resources": {"units": 1, "hours": 2, "chip_model": "cpu"},
}


def test_the_shipped_examples_parse_and_name_the_shipped_program() -> None:
    """Both example specs parse; their input is train_numpy.py with its true size and SHA-256."""
    program = (TASKS / "train_numpy.py").read_bytes()
    toml = read_task_spec(TASKS / "train-numpy.toml")
    framework = read_task_spec(TASKS / "train-numpy-framework.json")
    for spec in (toml, framework):
        (only,) = spec.inputs
        assert (only.path, only.size_bytes, only.sha256) == (
            "train_numpy.py",
            len(program),
            hashlib.sha256(program).hexdigest(),
        )
        assert spec.outputs == ("out",)
    assert toml.demand is not None
    assert toml.demand.chip_model == "cpu"
    assert toml.offer is None
    assert framework.framework == "pytorch>=2.4"
    assert framework.offer is not None
    assert framework.offer.offer_id == "cpu-1/local/local-1"


def _with(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    target: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is _DELETE:
        del target[int(last) if last.isdigit() else last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("program", _DELETE, "program"),
        ("program.command", "python3 run.py", "program.command"),
        ("program.command", [], "program.command"),
        ("program.command", _DELETE, "program"),
        ("program.framework", "pytorch>=>2", "program.framework"),
        ("program.env", {"1BAD": "x"}, "program.env"),
        ("program.colour", "red", "program.colour"),
        ("inputs.0.sha256", "XYZ", "inputs.0.sha256"),
        ("inputs.0.url", "ftp://example.org/run.py", "inputs.0.url"),
        ("inputs.0.path", "../escape", "inputs.0.path"),
        ("inputs.0.size_bytes", -1, "inputs.0.size_bytes"),
        ("outputs.1", "/etc/passwd", "outputs.1"),
        ("max_duration_s", 0, "max_duration_s"),
        ("max_duration_s", "60", "max_duration_s"),
        ("name", "Bad Name", "name"),
        ("colour", "red", "colour"),
        ("resources", _DELETE, "resources"),
        ("resources.units", 0, "resources.units"),
        ("resources.chip_model", 5, "resources.chip_model"),
        ("resources.objective", "cheapest", "resources.objective"),
        ("resources", {"offer_id": "p/r/f", "hours": 1}, "resources.units"),
        ("resources", {"offer_id": "", "units": 1, "hours": 1}, "resources.offer_id"),
    ],
)
def test_every_bad_field_is_named_by_its_path(path: str, value: Any, field: str) -> None:
    """A spec with one bad field is refused (422 bad_task_spec) naming that field's path."""
    with pytest.raises(TaskSpecError) as caught:
        parse_task_spec(_with(path, value))
    assert caught.value.field.startswith(field), caught.value
    assert (status_for(caught.value), caught.value.code) == (422, "bad_task_spec")


def test_whole_spec_shapes_and_rules_are_refused() -> None:
    """Not an object, two inputs on one path, an image with a versioned framework, bad TOML/JSON."""
    cases = [
        ([], "spec"),
        (_with("inputs", [VALID["inputs"][0], VALID["inputs"][0]]), "inputs"),
        (_with("program", {"image": "x/y:1", "framework": "pytorch>=2"}), "program.framework"),
    ]
    for data, field in cases:
        with pytest.raises(TaskSpecError) as caught:
            parse_task_spec(data)
        assert caught.value.field == field
    for text, form in (("name = ", "toml"), ("{", "json"), ("x" * (1 << 21), "json")):
        with pytest.raises(TaskSpecError, match="spec"):
            loads_task_spec(text, form)


def test_to_program_for_a_command_an_image_and_a_resolved_framework() -> None:
    """A command runs as given; an image keeps the framework it names; a framework needs the image the
    resolver picks for the chip, and the Program carries its reference and framework."""
    command = parse_task_spec(VALID).to_program()
    assert (command.command, command.image, command.max_duration_s) == (["python3", "run.py"], None, 60)
    assert [f.path for f in command.inputs] == ["run.py"]
    assert command.outputs == ["out", "log.txt"]
    image = parse_task_spec(_with("program", {"image": "x/y:1", "framework": "pytorch"})).to_program()
    assert (image.image, image.framework, image.command) == ("x/y:1", "pytorch", None)
    spec: TaskSpec = parse_task_spec(_with("program", {"framework": "torch>=2.4", "command": ["run.py"]}))
    with pytest.raises(ValueError, match="resolve the framework"):
        spec.to_program()
    picked = resolve(str(spec.framework), "cpu")
    assert isinstance(picked, Image)
    program = spec.to_program(picked)
    assert (program.image, program.framework, program.command) == (picked.reference, "pytorch", ["run.py"])


def test_json_and_toml_forms_agree() -> None:
    """The same spec written as JSON and as TOML parses to the same TaskSpec."""
    toml = f"""
name = "t"
outputs = ["out", "log.txt"]
max_duration_s = 60
[program]
command = ["python3", "run.py"]
env = {{ SEED = "7" }}
[[inputs]]
url = "https://example.org/run.py"
path = "run.py"
size_bytes = 10
sha256 = "{SHA}"
[resources]
units = 1
hours = 2
chip_model = "cpu"
"""
    assert loads_task_spec(toml, "toml") == loads_task_spec(json.dumps(VALID), "json")
