"""Every benchmark takes `--json` (to end with one JSON line of its figures and ratios), and the runner
passes it on; the benchmarks themselves are not run here."""

from __future__ import annotations

import importlib

import pytest

from bench.__main__ import available, module_of
from bench.__main__ import main as run_benches


@pytest.mark.parametrize("name", available())
def test_bench_parser_accepts_json(name: str) -> None:
    """`python -m bench NAME --json` parses: the module's parser has `--json`, off by default."""
    module = importlib.import_module(module_of(name))
    parser = module.build_parser()
    assert parser.parse_args(["--json"]).json is True
    assert parser.parse_args([]).json is False


def test_runner_accepts_json(capsys: pytest.CaptureFixture[str]) -> None:
    """The runner takes `--json` beside benchmark names (checked with --help, which runs none)."""
    with pytest.raises(SystemExit) as info:
        run_benches(["--help"])
    assert info.value.code == 0
    assert "--json" in capsys.readouterr().out
