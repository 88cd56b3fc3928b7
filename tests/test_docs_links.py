"""The README and the CHANGELOG link only to files that exist, and every docs page is in the site's
nav (the pages' own links are checked by `mkdocs build --strict` in `make test`)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def test_readme_and_changelog_links_resolve() -> None:
    """Every relative link of README.md and CHANGELOG.md names a file in the repository."""
    for name in ("README.md", "CHANGELOG.md"):
        for target, _anchor in LINK.findall((ROOT / name).read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (ROOT / target).is_file(), f"{name} links to missing {target}"


def test_every_page_is_in_the_nav() -> None:
    """mkdocs.yml's nav lists every page under docs/, and only those."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    in_nav = {page for entry in config["nav"] for page in entry.values()}
    assert in_nav == {path.name for path in (ROOT / "docs").glob("*.md")}
