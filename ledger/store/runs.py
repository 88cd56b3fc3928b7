"""Several callers' batches applied as one: which of them may go through the rules together, and
each caller's results cut back out (group commit, `ledger.store.writer.submit_batches`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.records import TransferRequest, TransferResult
from ledger.rules import apply_batch
from ledger.view import BatchOutcome, LedgerView


def request_ids(requests: Sequence[TransferRequest]) -> set[str]:
    """The ids of `requests` that can name something stored (built from JSON, an id may be any type)."""
    return {i for r in requests if type(i := r.id) is str}


def apply_runs(
    view: LedgerView, runs: Sequence[Sequence[Sequence[TransferRequest]]], ts_ms: int, next_seq: int
) -> tuple[list[list[TransferResult]], BatchOutcome]:
    """Apply each run in turn to `view`, numbering after the run before: each batch's results, and
    the outcome to write."""
    results: list[list[TransferResult]] = []
    outcomes: list[BatchOutcome] = []
    for run in runs:
        outcome = apply_batch(view, run[0] if len(run) == 1 else combined_of(run), ts_ms, next_seq)
        next_seq += len(outcome.created)
        outcomes.append(outcome)
        results += split(outcome.results, run)
    return results, outcomes[0] if len(outcomes) == 1 else merged(outcomes)


def combined_of(batches: Sequence[Sequence[TransferRequest]]) -> list[TransferRequest]:
    """The requests of `batches`, one after another."""
    return [request for batch in batches for request in batch]


def chain_free_runs(batches: Sequence[Sequence[TransferRequest]]) -> list[list[Sequence[TransferRequest]]]:
    """`batches` in order, consecutive ones without a linked request joined into one run: no chain
    can cross their boundaries, so applying them as one batch is applying them one after another
    (a batch with a chain is a run of its own, so a chain it leaves open fails there)."""
    runs: list[list[Sequence[TransferRequest]]] = []
    joined: list[Sequence[TransferRequest]] = []
    for batch in batches:
        if any(request.linked is True for request in batch):
            if joined:
                runs.append(joined)
                joined = []
            runs.append([batch])
        else:
            joined.append(batch)
    if joined:
        runs.append(joined)
    return runs


def split(
    results: list[TransferResult], run: Sequence[Sequence[TransferRequest]]
) -> list[list[TransferResult]]:
    """A run's results cut back into its batches' results, each indexed from 0."""
    if len(run) == 1:
        return [results]
    parts, start = [], 0
    for batch in run:
        part = results[start : start + len(batch)]
        for result in part:
            result.index -= start
        parts.append(part)
        start += len(batch)
    return parts


def merged(outcomes: Sequence[BatchOutcome]) -> BatchOutcome:
    """One outcome writing what each of `outcomes` (applied in turn to one view) wrote."""
    return BatchOutcome(
        [result for outcome in outcomes for result in outcome.results],
        [transfer for outcome in outcomes for transfer in outcome.created],
        [failure for outcome in outcomes for failure in outcome.failures],
        set().union(*(outcome.touched for outcome in outcomes)),
    )
