"""`cpnode tasks submit|list|show|logs|stop|outputs`: consumers' tasks through the running node.

    cpnode tasks submit FILE [--consumer C] [--id ID] [--follow] [--json]
    cpnode tasks list [--consumer C]
    cpnode tasks show ID
    cpnode tasks logs ID [--follow]
    cpnode tasks stop ID
    cpnode tasks outputs ID --out DIR

FILE is a task spec (TOML, or JSON; see configs/tasks/), checked here before it is sent (exit 2
naming the field). With the admin token `submit` needs `--consumer`; with `--token-file PATH` (or
$CPNODE_CONSUMER_TOKEN) every command acts as that token's consumer, on its own tasks only.
`--follow` shows the task's state changes (on stderr) and its log as it grows (on stdout) until
the task is released, and exits 0 only if it succeeded (1 if it failed or was stopped). `outputs`
fetches the kept output files into DIR, each checked against its SHA-256. Every command takes
`--json` (`--follow` then prints one JSON event per line).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_handlers,
    console,
    print_fields,
    print_json,
    print_output,
    print_table,
    settings_from_args,
)
from node.cli.node_api import add_token_argument, call, consumer_token, event_stream, open_url
from node.money import format_money
from node.times import format_ms

COLUMNS = ["task", "consumer", "name", "state", "outcome", "offer", "used (s)", "cost"]
RETRY_S = 1.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode tasks`."""
    parser = add_command(
        commands, "tasks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(title="tasks commands", metavar="ACTION", required=True)
    submit = sub.add_parser("submit", help="submit a task spec (TOML or JSON) for a consumer")
    submit.add_argument("file", type=Path, metavar="FILE")
    submit.add_argument("--consumer", help="the consumer to run it for (needed with the admin token)")
    submit.add_argument("--id", help="task id NODE.RANDOM; submitting again with the same id is safe")
    listing = sub.add_parser("list", help="tasks, newest first")
    listing.add_argument("--consumer")
    show = sub.add_parser("show", help="one task with its history")
    logs = sub.add_parser("logs", help="a task's log (stdout and stderr together)")
    stop = sub.add_parser("stop", help="stop a task (stopping it again changes nothing)")
    outputs = sub.add_parser("outputs", help="fetch a task's kept output files")
    outputs.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write them")
    for parser_ in (show, logs, stop, outputs):
        parser_.add_argument("task_id", metavar="ID")
    for parser_ in (submit, logs):
        parser_.add_argument(
            "--follow",
            action="store_true",
            help="follow state and log until the task ends; exit 0 only if it succeeded",
        )
    add_handlers(
        [
            (submit, run_submit),
            (listing, run_list),
            (show, run_show),
            (logs, run_logs),
            (stop, run_stop),
            (outputs, run_outputs),
        ],
        add_token_argument,
    )


def _path(task_id: str, tail: str = "") -> str:
    return f"/api/v1/tasks/{quote(task_id, safe='')}{tail}"


def read_spec(path: Path) -> dict[str, Any]:
    """The spec file as JSON data, checked as the node checks it (CliError exit 2 naming the field)."""
    from node.tasks.spec import TaskSpecError, loads_task_spec

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}", 2) from None
    form = "toml" if path.suffix == ".toml" else "json"
    try:
        loads_task_spec(text, form)  # the node checks it again; this names the field before sending
    except TaskSpecError as exc:
        raise CliError(f"{path}: {exc}", 2) from None
    data: dict[str, Any] = tomllib.loads(text) if form == "toml" else json.loads(text)
    return data


def _cost(task: dict[str, Any]) -> str:
    if task.get("amount") is None or not task.get("currency"):
        return ""
    return format_money(task["amount"], task["currency"])


def print_task(task: dict[str, Any]) -> None:
    """A task as `name : value` lines, with its history when shown."""
    state = task["state"] + (
        f" ({task['outcome']})" if task.get("outcome") and task["state"] == "released" else ""
    )
    fields: list[tuple[str, Any]] = [
        ("task", task["id"]),
        ("state", state),
        ("consumer", task.get("consumer")),
        ("name", task.get("name")),
        ("offer", f"{task['offer_id']} from {task['source']}" if task.get("offer_id") else ""),
        ("order", task.get("order_id")),
        ("instance", task.get("instance_id")),
        ("exit code", task.get("exit_code")),
        ("reason", task.get("reason")),
        ("detail", task.get("detail")),
        ("submitted", format_ms(task.get("created_ms"))),
        ("started", format_ms(task.get("started_ms"))),
        ("ended", format_ms(task.get("ended_ms"))),
        ("used", "" if task.get("used_s") is None else f"{task['used_s']} s"),
        ("cost", _cost(task)),
    ]
    print_fields(fields)
    for entry in task.get("history", []):
        console().print(
            f"  {format_ms(entry['ts_ms'])} {entry['event']:<14} → {entry['state']}  {entry.get('detail') or ''}",
            markup=False,
        )


def run_submit(args: argparse.Namespace) -> int:
    """Handler of `cpnode tasks submit`."""
    settings = settings_from_args(args)
    token = consumer_token(args)
    if token is None and not args.consumer:
        raise CliError("--consumer is needed with the admin token", 2)
    body: dict[str, Any] = {"spec": read_spec(args.file)}
    if args.consumer:
        body["consumer"] = args.consumer
    if args.id:
        body["id"] = args.id
    task = call(settings, "POST", "/api/v1/tasks", body, token=token)
    if not args.follow:
        return print_output(args, task, print_task)
    if not args.json:
        console().print(f"task {task['id']} submitted", markup=False)
    return follow(settings, task["id"], token, args.json)


def run_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode tasks list`."""
    settings = settings_from_args(args)
    query = f"?{urlencode({'consumer': args.consumer})}" if args.consumer else ""
    tasks = call(settings, "GET", f"/api/v1/tasks{query}", token=consumer_token(args))["tasks"]
    if args.json:
        print_json(tasks)
        return 0
    rows = [
        [
            t["id"],
            t.get("consumer"),
            t.get("name"),
            t["state"],
            t.get("outcome"),
            t.get("offer_id"),
            t.get("used_s"),
            _cost(t),
        ]
        for t in tasks
    ]
    print_table(f"tasks at {settings.node.name}", COLUMNS, rows)
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Handler of `cpnode tasks show`."""
    settings = settings_from_args(args)
    task = call(settings, "GET", _path(args.task_id), token=consumer_token(args))
    return print_output(args, task, print_task)


def run_stop(args: argparse.Namespace) -> int:
    """Handler of `cpnode tasks stop`."""
    settings = settings_from_args(args)
    task = call(settings, "POST", _path(args.task_id, "/stop"), {}, token=consumer_token(args))
    return print_output(args, task, print_task)


def run_logs(args: argparse.Namespace) -> int:
    """Handler of `cpnode tasks logs`."""
    settings = settings_from_args(args)
    token = consumer_token(args)
    if args.follow:
        return follow(settings, args.task_id, token, args.json, states=False)
    offset, texts = 0, []
    while True:
        chunk = call(
            settings, "GET", _path(args.task_id, f"/logs?offset={offset}&limit=1048576"), token=token
        )
        data = base64.b64decode(chunk["data_b64"])
        if args.json:
            texts.append(data.decode("utf-8", errors="replace"))
        else:
            sys.stdout.write(data.decode("utf-8", errors="replace"))
        offset = chunk["next_offset"]
        if not data or offset >= chunk["size_bytes"]:
            break
    if args.json:
        print_json({"task": args.task_id, "size_bytes": offset, "text": "".join(texts)})
    sys.stdout.flush()
    return 0


def follow(settings: Any, task_id: str, token: str | None, as_json: bool, states: bool = True) -> int:
    """Show the task's state changes and log until it is released (reconnecting if the stream is
    cut); 0 if it succeeded, else 1."""
    after, log_offset = 0, 0
    while True:
        query = urlencode({"after": after, "log_offset": log_offset})
        try:
            for event, payload in event_stream(settings, _path(task_id, f"/events?{query}"), token):
                if event == "state":
                    after = payload["id"]
                elif event == "log":
                    log_offset = payload["offset"] + len(payload["text"].encode("utf-8"))
                _show_event(event, payload, as_json, states)
                if event == "end":
                    return 0 if payload.get("outcome") == "succeeded" else 1
        except (OSError, ValueError) as exc:
            if not as_json:
                console().print(f"[stream cut: {exc}; reconnecting]", markup=False)
        time.sleep(RETRY_S)


def _show_event(event: str, payload: dict[str, Any], as_json: bool, states: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"event": event, "data": payload}, sort_keys=True) + "\n")
        sys.stdout.flush()
        return
    if event == "log":
        sys.stdout.write(payload["text"])
        sys.stdout.flush()
    elif event == "state" and states:
        detail = f" ({payload['detail']})" if payload.get("detail") else ""
        sys.stderr.write(f"[task] {payload['state']}{detail}\n")
    elif event == "end":
        outcome = payload.get("outcome")
        used = "" if payload.get("used_s") is None else f", {payload['used_s']} s used, cost {_cost(payload)}"
        sys.stderr.write(f"[task] {payload['id']} {outcome}{used}\n")
    elif event == "log_unavailable" and states:
        sys.stderr.write(f"[task] log unavailable: {payload.get('message')}\n")


def run_outputs(args: argparse.Namespace) -> int:
    """Handler of `cpnode tasks outputs`."""
    from connectors.contract import relative_path

    settings = settings_from_args(args)
    token = consumer_token(args)
    listed = call(settings, "GET", _path(args.task_id, "/outputs"), token=token)
    if not listed["complete"]:
        raise CliError(f"task {args.task_id} has no kept outputs yet (its run has not ended)")
    written = []
    for item in listed["files"]:
        try:
            relative_path(item["path"])
        except ValueError as exc:
            raise CliError(f"the node listed an unsafe output path: {exc}") from None
        target = args.out / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        part = target.with_name(target.name + ".part")
        with (
            open_url(
                settings, "GET", _path(args.task_id, "/outputs/" + quote(item["path"])), token=token
            ) as response,
            part.open("wb") as handle,
        ):
            while block := response.read(1 << 16):
                digest.update(block)
                handle.write(block)
        if digest.hexdigest() != item["sha256"]:
            part.unlink(missing_ok=True)
            raise CliError(f"{item['path']} does not match its SHA-256; nothing written for it")
        part.replace(target)
        written.append({**item, "written_to": str(target)})
    if args.json:
        print_json(written)
    else:
        print_table(
            f"outputs of {args.task_id}", ["path", "bytes", "sha256"],
            [[w["path"], w["size_bytes"], w["sha256"][:16] + "…"] for w in written],
        )  # fmt: skip
    return 0
