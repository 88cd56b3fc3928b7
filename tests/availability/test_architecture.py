"""Architecture files: format, defaults, overrides and clear errors; the shipped node architecture."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.availability import ArchitectureError, load_architecture, parse_architecture
from node.roles import ROLES
from tests.support.availability import NODE_TOML


def write(tmp_path: Path, text: str) -> Path:
    """Write an architecture file and return its path."""
    path = tmp_path / "arch.toml"
    path.write_text(text, encoding="utf-8")
    return path


EXAMPLE = """
availability = 0.99
[[modules]]
name = "trading"
submodules = ["market", "apps", { name = "demand", availability = 0.995 }, "matching"]
"""


def test_names_take_the_default_and_tables_their_own(tmp_path: Path) -> None:
    """A bare name gets the file's default availability; a table keeps its own."""
    arch = load_architecture(write(tmp_path, EXAMPLE))
    assert arch.name == "arch"
    assert arch.modules[0].availabilities == (0.99, 0.99, 0.995, 0.99)


def test_command_line_default_overrides_only_the_default(tmp_path: Path) -> None:
    """An explicit default (--availability) changes name-only sub-modules and leaves tables alone."""
    arch = load_architecture(write(tmp_path, EXAMPLE), default_availability=0.9)
    assert arch.modules[0].availabilities == (0.9, 0.9, 0.995, 0.9)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[modules]]\nname='m'\nsubmodules=['a']\n", "has no availability"),
        ("colour = 1\n" + EXAMPLE, "unknown key(s) colour"),
        ("availability = 1.5\n[[modules]]\nname='m'\nsubmodules=['a']\n", "availability"),
        ("availability = 0.9\n[[modules]]\nname='m'\nsubmodules=[]\n", "modules[0].submodules"),
        ("availability = 0.9\n[[modules]]\nname='m'\nsubmodules=['a','a']\n", "unique"),
        ("availability = 0.9\n[[modules]]\nname='m'\nsubmodules=[{name='a', avail=0.9}]\n", "avail"),
        ("availability = 0.9\n[[modules]]\nname='m'\nsubmodules=[{name='a', availability=0}]\n", "(0, 1]"),
        ("availability = 0.9\nbackups = -1\n[[modules]]\nname='m'\nsubmodules=['a']\n", "backups"),
        ("availability = 0.9\n", "at least one [[modules]]"),
        ("availability = 0.9\n[[modules]]\nname='m'\nsubmodules=[3]\n", "a name or a table"),
        ("this is = not toml", "not valid TOML"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, fragment: str) -> None:
    """Each malformed file raises ArchitectureError naming the file and what is wrong."""
    path = write(tmp_path, text)
    with pytest.raises(ArchitectureError) as caught:
        load_architecture(path)
    assert fragment in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A missing architecture file is an ArchitectureError, not an OSError."""
    with pytest.raises(ArchitectureError, match="cannot be read"):
        load_architecture(tmp_path / "absent.toml")


def test_duplicate_module_names_are_refused() -> None:
    """Two modules with one name are refused."""
    data = {
        "availability": 0.9,
        "modules": [{"name": "m", "submodules": ["a"]}, {"name": "m", "submodules": ["b"]}],
    }
    with pytest.raises(ArchitectureError, match="module names"):
        parse_architecture(data, "x")


def test_node_architecture_uses_each_role_exactly_once() -> None:
    """configs/architecture/node.toml names exactly the node's roles, each once, all with availabilities."""
    arch = load_architecture(NODE_TOML)
    names = [sub.name for module in arch.modules for sub in module.submodules]
    assert sorted(names) == sorted(ROLES)
    assert len(names) == len(set(names))
    assert arch.backups is not None
    assert arch.target is not None
