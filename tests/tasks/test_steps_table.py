"""The task actions as data: every state of the task machine that is not final has exactly one
action for each kind of task the driver runs, and no action exists for a final state."""

from __future__ import annotations

from typing import Any, cast

from node.tasks.core import Tasks
from node.tasks.machine import FINAL, STATES
from node.tasks.steps import TaskSteps


def test_every_unfinished_state_has_an_action_for_each_kind() -> None:
    """The action table's states are exactly the machine's non-final states, for every kind."""
    steps = TaskSteps(cast(Tasks, cast(Any, object())))
    for kind, actions in steps.actions.items():
        assert set(actions) == set(STATES) - set(FINAL), kind
