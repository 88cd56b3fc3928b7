"""How many examples the property tests run, by Hypothesis profile.

- `ci`, the default (`make test`, a plain `pytest`): 30 % of each test's full count (at least
  `MINIMUM`), so the suite stays quick while every property is still exercised on every run;
- `thorough` (`HYPOTHESIS_PROFILE=thorough pytest tests/ledger/test_properties.py ...`): the full
  counts, for a change to the code a property covers and before a release.

A test names its full count with `examples(n)` instead of a literal `max_examples=n`; tests that
give no count run the profile's own (Hypothesis' default of 100 when thorough).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hypothesis import settings

PROFILE_ENV = "HYPOTHESIS_PROFILE"
FULL = 100  # Hypothesis' default max_examples: the thorough profile's, the unit of the share
PROFILES = {"ci": 30, "thorough": FULL}
MINIMUM = 3

for _name, _count in PROFILES.items():
    settings.register_profile(_name, max_examples=_count)


def load_profile(environ: Mapping[str, str] = os.environ) -> str:
    """Load the profile named by $HYPOTHESIS_PROFILE (default `ci`); an unknown name is an error."""
    name = environ.get(PROFILE_ENV, "ci")
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={name!r}: the profiles are {', '.join(PROFILES)}")
    settings.load_profile(name)
    return name


def examples(full: int) -> int:
    """A test's example count under the loaded profile: `full` when thorough, its share otherwise."""
    if full < 1:
        raise ValueError(f"a property test runs at least one example, not {full}")
    return max(min(MINIMUM, full), full * settings().max_examples // FULL)
