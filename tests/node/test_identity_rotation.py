"""A running node notices `cpnode keys rotate` within ROTATION_CHECK_S, looking at the key file at
most once in that time (a stat per order was measurable under load)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from node.cli.main import main as cpnode
from node.config import load_settings
from node.identity import ROTATION_CHECK_S, load_identity, reload_if_rotated, rotate_identity


def test_rotation_is_noticed_within_the_check_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between checks the loaded key is kept; after ROTATION_CHECK_S the rotated one is loaded, and a
    second holder of the old identity picks the new key up at its next call."""
    assert cpnode(["init", str(tmp_path / "n"), "--name", "alpha", "--operator", "Org", "--region", "X"]) == 0
    settings = load_settings(tmp_path / "n" / "node.toml")
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    first = load_identity(settings)
    assert reload_if_rotated(settings, first) is first  # checked now: unchanged
    _, new = rotate_identity(settings, int(time.time()))
    clock[0] += ROTATION_CHECK_S / 2
    assert reload_if_rotated(settings, first) is first  # within the interval: not looked at
    clock[0] += ROTATION_CHECK_S / 2
    assert reload_if_rotated(settings, first).key_id == new.key_id
    assert reload_if_rotated(settings, first).key_id == new.key_id  # the other holder of the old key
