"""The tasks error tree: one root, an HTTP status and a machine-readable code on each.

A bad spec is `node.tasks.spec.TaskSpecError` (422, naming the field); the rest are here. What the
caller asked wrongly changes nothing; `PartnerTaskError` says a partner could not be asked or gave
an answer we cannot use about a task it runs (the task itself is kept and asked again later).
"""

from __future__ import annotations

from typing import Any


class TaskError(Exception):
    """Root of every tasks error; `details` are added to the JSON error body."""

    http_status = 400
    code = "task_error"

    def __init__(self, message: str, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.details = details


class UnknownTaskError(TaskError, LookupError):
    """No such task, or one the caller may not see (answered alike, so ids cannot be probed)."""

    http_status = 404
    code = "unknown_task"


class TaskStateError(TaskError):
    """The task's state does not allow this now (outputs of a task still running, stopping an ended one)."""

    http_status = 409
    code = "bad_task_state"


class TasksUnavailableError(TaskError):
    """This process cannot do it (it hosts no pools, or runs no tasks)."""

    http_status = 503
    code = "tasks_unavailable"


class PartnerTaskError(TaskError):
    """A partner did not answer about a task, or answered what we cannot use (remote fault)."""

    http_status = 502
    code = "partner_task_error"
