"""The migration state machine (paper figure 6), as one transition table with an undo for every
forward step (pure: no I/O).

Rules, as for every state machine of the node: the orchestrator stores a transition (a
compare-and-set on the current state) before it acts on the new state, and every state's action is
idempotent, so a node restarted mid-migration runs the action of the stored state again and the
migration continues, or rolls back, from where it was. The source stays authoritative until the
cutover commits: before that, any failure undoes the forward steps in reverse order and the source
runs on from its own state.

    state                  action                                        events → next state
    planned                choose destination and path (or take them)    provision → path_provisioning
    path_provisioning      reserve the network path (network plugin)     path_ready → path_ready
    path_ready             (nothing: the path is reserved)               deploy → destination_deploying
    destination_deploying  create the destination instance, deploy       deployed → destination_ready
    destination_ready      (nothing: the destination waits, stopped)     quiesce → source_quiescing
    source_quiescing       checkpoint the source, stop it                checkpointed → transferring
    transferring           the data express moves the state files        transferred → verifying
    verifying              destination files equal the checkpoint's      verified → cutover
    cutover                start the destination from the state; the     committed → completed
                           commit point; then release the source
    completed              final
    any state before cutover's commit   --fail-->   rolling_back   (undo in reverse, below)
                                        --cancel--> cancelling     (the same undo, asked for)
    rolling_back           undo                                          rolled_back → rolled_back
    cancelling             undo                                          cancelled → cancelled
    rolling_back, cancelling   an undo that fails                        undo_failed → needs_attention
    needs_attention        (rests: shown to the operator)                retry → rolling_back
    rolled_back, cancelled final

Undo, in reverse order of the forward steps (`UNDO_ORDER`): the transfer is cancelled (the express
removes what it wrote at the destination), the source is started again from its own state if it
was stopped, the destination instance is deleted, the path is released. Each undo is idempotent.
A second cancel changes nothing (`cancel_target`).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from node.errors import CodedError

# The forward states in order (the happy path of figure 6), and the event that leaves each.
ForwardState = Literal[
    "planned",
    "path_provisioning",
    "path_ready",
    "destination_deploying",
    "destination_ready",
    "source_quiescing",
    "transferring",
    "verifying",
    "cutover",
    "completed",
]
ForwardEvent = Literal[
    "provision",
    "path_ready",
    "deploy",
    "deployed",
    "quiesce",
    "checkpointed",
    "transferred",
    "verified",
    "committed",
]
MigrationState = Literal[
    ForwardState,
    "rolling_back",
    "rolled_back",
    "cancelling",
    "cancelled",
    "needs_attention",
]
MigrationEvent = Literal[
    ForwardEvent,
    "fail",
    "cancel",
    "rolled_back",
    "cancelled",
    "undo_failed",
    "retry",
]
UndoStep = Literal["transfer", "source", "destination", "path"]

STATES: Final = frozenset[MigrationState](get_args(MigrationState))
EVENTS: Final = frozenset[MigrationEvent](get_args(MigrationEvent))
START: Final[MigrationState] = "planned"
FORWARD: Final[tuple[MigrationState, ...]] = get_args(ForwardState)
_FORWARD_EVENTS: Final[tuple[MigrationEvent, ...]] = get_args(ForwardEvent)
# States where the source is still authoritative and a failure or a cancel undoes what was done.
# `cutover` is among them only until its commit; the orchestrator checks the commit before failing.
UNDOABLE: Final = frozenset[MigrationState](FORWARD[:-1])
FINAL: Final = frozenset[MigrationState]({"completed", "rolled_back", "cancelled"})
# States a migration rests in until someone acts on it; every other state has an action to run.
RESTING: Final = FINAL | {"needs_attention"}
UNDOING: Final = frozenset[MigrationState]({"rolling_back", "cancelling"})
# The undo steps, in the order they run (reverse of the forward steps that need undoing).
UNDO_ORDER: Final[tuple[UndoStep, ...]] = ("transfer", "source", "destination", "path")

TRANSITIONS: Final[dict[tuple[MigrationState, MigrationEvent], MigrationState]] = {
    **{
        (state, event): FORWARD[i + 1]
        for i, (state, event) in enumerate(zip(FORWARD[:-1], _FORWARD_EVENTS, strict=True))
    },
    **{(state, "fail"): "rolling_back" for state in FORWARD[:-1]},
    **{(state, "cancel"): "cancelling" for state in FORWARD[:-2]},  # not once the cutover began
    ("rolling_back", "rolled_back"): "rolled_back",
    ("rolling_back", "undo_failed"): "needs_attention",
    ("cancelling", "cancelled"): "cancelled",
    ("cancelling", "undo_failed"): "needs_attention",
    ("needs_attention", "retry"): "rolling_back",
}


class MigrationTransitionError(CodedError, ValueError, code="invalid_migration_state"):
    """An event the migration's current state does not take."""


def next_state(state: MigrationState, event: MigrationEvent) -> MigrationState:
    """The state `event` moves a migration in `state` to; MigrationTransitionError if it does not apply."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise MigrationTransitionError(f"a migration that is {state} does not take {event!r}") from None


def events_from(state: MigrationState) -> list[MigrationEvent]:
    """The events a migration in `state` takes, in table order."""
    return [event for (source, event) in TRANSITIONS if source == state]


def forward_event(state: MigrationState) -> MigrationEvent:
    """The event that moves a forward state one step along figure 6."""
    index = FORWARD.index(state)
    if index >= len(_FORWARD_EVENTS):
        raise MigrationTransitionError(f"a migration that is {state} has no step forward")
    return _FORWARD_EVENTS[index]


def cancel_target(state: MigrationState) -> MigrationState | None:
    """Where a cancel moves a migration in `state`: None when it is already cancelling or cancelled
    (a second cancel is harmless); MigrationTransitionError once it is too late (cutover, an end)."""
    if state in ("cancelling", "cancelled"):
        return None
    return next_state(state, "cancel")


def undo_event(state: MigrationState) -> MigrationEvent:
    """The event that ends a successful undo in `state` (rolling_back or cancelling)."""
    if state == "rolling_back":
        return "rolled_back"
    if state == "cancelling":
        return "cancelled"
    raise MigrationTransitionError(f"a migration that is {state} is not undoing anything")


def is_final(state: MigrationState) -> bool:
    """Whether nothing more happens to a migration in `state`."""
    return state in FINAL
