"""Plugin health as one transition table (pure: no clock, no I/O).

Rules:
- A plugin starts in `starting`; the first successful heartbeat or health probe makes it `online`.
- Only `online` plugins are called and have offers.
- `missed_limit` happens when a remote plugin's last heartbeat is `MISSED_LIMIT` intervals old, or
  an in-process plugin failed `MISSED_LIMIT` health probes in a row: the plugin goes `offline`
  and its offers are withdrawn.
- An `offline` plugin that heartbeats or probes fine again goes back `online` on its own.
- `remove` ends it from any state; a removed plugin takes no more events.

With several replicas the stored state is the one that counts: a transition is stored only while
the plugin is still in one of the states it starts from (`sources`), so when two replicas make the
same decision it is stored once, and every replica follows the stored state.
"""

from __future__ import annotations

from typing import Literal

from connectors.errors import InvalidState

PluginState = Literal["starting", "online", "offline", "removed"]
HealthEvent = Literal["ok", "missed_limit", "remove"]
MISSED_LIMIT = 3

TRANSITIONS: dict[tuple[PluginState, HealthEvent], PluginState] = {
    ("starting", "ok"): "online",
    ("starting", "missed_limit"): "offline",
    ("starting", "remove"): "removed",
    ("online", "ok"): "online",
    ("online", "missed_limit"): "offline",
    ("online", "remove"): "removed",
    ("offline", "ok"): "online",
    ("offline", "missed_limit"): "offline",
    ("offline", "remove"): "removed",
}


def next_state(state: PluginState, event: HealthEvent) -> PluginState:
    """The state after `event`, or InvalidState if the table has no such transition."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidState(f"plugin in state {state!r} takes no {event!r} event") from None


def missed_heartbeats(last_seen_ms: int, now_ms: int, interval_ms: int) -> int:
    """How many whole heartbeat intervals have passed since the last heartbeat."""
    return max(0, (now_ms - last_seen_ms) // max(1, interval_ms))


def sources(event: HealthEvent, new: PluginState) -> frozenset[PluginState]:
    """The states from which `event` leads to `new` (other than `new` itself): a stored transition
    applies only while the plugin is still in one of them, so replicas never store it twice."""
    return frozenset(s for (s, e), t in TRANSITIONS.items() if e == event and t == new and s != new)
