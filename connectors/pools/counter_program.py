"""A tiny program that follows the local pool's checkpoint protocol: it counts, and checkpoints its count.

Run as `python3 counter_program.py`; environment: CPNODE_STATE_DIR, CPNODE_CONTROL_DIR, CPNODE_RESTORE,
and optionally COUNTER_STATE_BYTES (size of an extra state blob, to give migrations real bytes to move).
Uses only the standard library so it runs under any python3 in the pool's sandbox.
"""

import json
import os
import signal
import time
from pathlib import Path

STATE = Path(os.environ["CPNODE_STATE_DIR"])
CONTROL = Path(os.environ["CPNODE_CONTROL_DIR"])
requested = False


def _on_signal(_signum: int, _frame: object) -> None:
    global requested
    requested = True


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _read_seq(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def main() -> None:
    global requested
    signal.signal(signal.SIGUSR1, _on_signal)
    (CONTROL / "ready").touch()
    count = 0
    if os.environ.get("CPNODE_RESTORE") == "1":
        count = json.loads((STATE / "counter.json").read_text())["count"]
    print(f"counter starting at {count}", flush=True)
    blob_bytes = int(os.environ.get("COUNTER_STATE_BYTES", "0"))
    while True:
        count += 1
        wanted = _read_seq(CONTROL / "checkpoint.request")
        # The request file says whether a checkpoint is owed; SIGUSR1 only says "look now". A signal
        # arriving after the request was already seen by polling must not write the state again.
        if wanted > _read_seq(CONTROL / "checkpoint.done"):
            requested = False
            if blob_bytes:
                _write_atomic(
                    STATE / "blob.bin", (count.to_bytes(8, "big") * (blob_bytes // 8 + 1))[:blob_bytes]
                )
            _write_atomic(STATE / "counter.json", json.dumps({"count": count}).encode())
            _write_atomic(CONTROL / "checkpoint.done", str(wanted).encode())
        time.sleep(0.01)


if __name__ == "__main__":
    main()
