"""The console's assets: vendored from their registry packages, pinned, licensed, unchanged; no
page loads anything from another site, and every form that changes something carries a CSRF token."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from node.console.component import STATIC_DIR

VENDOR = STATIC_DIR / "vendor"
TEMPLATES = STATIC_DIR.parent / "templates"
MANIFEST = json.loads((VENDOR / "MANIFEST.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("asset", MANIFEST["assets"], ids=lambda a: a["package"])
def test_each_vendored_file_matches_its_manifest_digest(asset: dict[str, object]) -> None:
    """Every vendored file has the sha256 the manifest pins, and its package's licence is beside it."""
    files = asset["files"]
    assert isinstance(files, dict)
    for name, digest in files.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert any(Path(name).name.startswith("LICENSE") for name in files)
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(asset["version"]))


def test_nothing_is_vendored_outside_the_manifest() -> None:
    """Every file under static/vendor is listed (a file added by hand fails here)."""
    listed = {name for asset in MANIFEST["assets"] for name in asset["files"]}
    present = {str(p.relative_to(VENDOR)) for p in VENDOR.rglob("*") if p.is_file()} - {"MANIFEST.json"}
    assert present == listed


def test_pages_load_nothing_from_other_sites_and_run_no_inline_script() -> None:
    """No template names an http(s) URL for a script, style or image, or has inline script or style."""
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert not re.search(r'(src|href)="(https?:)?//', text), template.name
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name
        assert "<style" not in text, template.name
        assert " style=" not in text, template.name
        assert not re.search(r"\son[a-z]+=", text), template.name  # no inline event handlers


def test_every_post_form_carries_a_csrf_token() -> None:
    """Each `<form method="post">` in the templates has the hidden csrf field."""
    forms = 0
    for template in TEMPLATES.glob("*.html"):
        for form in re.findall(
            r'<form[^>]*method="post".*?</form>', template.read_text(encoding="utf-8"), re.S
        ):
            forms += 1
            assert 'name="csrf"' in form, f"{template.name}: {form[:120]}"
    assert forms >= 10
