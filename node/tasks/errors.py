"""The tasks error tree: one root and a machine-readable code on each (statuses: node.http.statuses).

A bad spec is `node.tasks.spec.TaskSpecError` (422, naming the field); the rest are here. What the
caller asked wrongly changes nothing; `PartnerTaskError` says a partner could not be asked or gave
an answer we cannot use about a task it runs (the task itself is kept and asked again later).
"""

from __future__ import annotations

from node.errors import CodedError


class TaskError(CodedError, code="task_error"):
    """Root of every tasks error; `details` are added to the JSON error body."""


class UnknownTaskError(TaskError, LookupError, code="unknown_task"):
    """No such task, or one the caller may not see (answered alike, so ids cannot be probed)."""


class TaskStateError(TaskError, code="bad_task_state"):
    """The task's state does not allow this now (outputs of a task still running, stopping an ended one)."""


class TasksUnavailableError(TaskError, code="tasks_unavailable"):
    """This process cannot do it (it hosts no pools, or runs no tasks)."""


class PartnerTaskError(TaskError, code="partner_task_error"):
    """A partner did not answer about a task, or answered what we cannot use (remote fault)."""
