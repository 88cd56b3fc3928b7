"""A small deterministic training program (NumPy only): a two-layer network fitted to seeded data.

    python3 train_numpy.py [--steps 300] [--seed 7] [--features 32] [--hidden 64] [--samples 2048]
                           [--batch 64] [--step-delay-ms 0] [--out out]

Everything is derived from the seed: the data, the initial weights, and each step's minibatch (drawn
from a generator seeded with (seed, step)), so a run resumed from a checkpoint continues exactly as
an uninterrupted one: same weights, bit for bit. At the end it writes `out/model.npy` (every
parameter as one float64 vector) and `out/metrics.json`; both are byte-identical from run to run.
`--hidden` and `--features` set the state's size (hidden 16384 × features 2048 is 256 MiB).

It follows the local pool's checkpoint protocol (connectors/pools/local.py): with CPNODE_CONTROL_DIR
set it installs a SIGUSR1 handler, then creates `ready`; when a checkpoint is requested (signal, or
a higher number in `checkpoint.request`) it writes `checkpoint.npy` and `checkpoint.json` into
CPNODE_STATE_DIR (complete, fsynced files), then the number into `checkpoint.done`; started with
CPNODE_RESTORE=1 it resumes from them. Settings come from the arguments, or TRAIN_* variables.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

import numpy as np

requested = False


def _on_signal(_signum: int, _frame: object) -> None:
    global requested
    requested = True


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=_env_int("TRAIN_STEPS", 300))
    parser.add_argument("--seed", type=int, default=_env_int("TRAIN_SEED", 7))
    parser.add_argument("--features", type=int, default=_env_int("TRAIN_FEATURES", 32))
    parser.add_argument("--hidden", type=int, default=_env_int("TRAIN_HIDDEN", 64))
    parser.add_argument("--samples", type=int, default=_env_int("TRAIN_SAMPLES", 2048))
    parser.add_argument("--batch", type=int, default=_env_int("TRAIN_BATCH", 64))
    parser.add_argument("--step-delay-ms", type=int, default=_env_int("TRAIN_STEP_DELAY_MS", 0))
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("TRAIN_OUT", "out")))
    return parser.parse_args()


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _npy(vector: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, vector, allow_pickle=False)
    return buffer.getvalue()


def _read_seq(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


class Model:
    """Weights of a tanh network with one hidden layer, kept as one flat float64 vector."""

    def __init__(self, features: int, hidden: int, rng: np.random.Generator) -> None:
        self.shapes = [(features, hidden), (hidden,), (hidden, 1), (1,)]
        scale = [1 / np.sqrt(features), 0.0, 1 / np.sqrt(hidden), 0.0]
        parts = [rng.standard_normal(shape) * s for shape, s in zip(self.shapes, scale, strict=True)]
        self.flat = np.concatenate([p.ravel() for p in parts])

    def views(self) -> list[np.ndarray]:
        """The parameters as arrays sharing the flat vector's memory."""
        out, at = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            out.append(self.flat[at : at + size].reshape(shape))
            at += size
        return out

    def step(self, x: np.ndarray, y: np.ndarray, learning_rate: float) -> float:
        """One step of gradient descent on the mean squared error; the batch loss before it."""
        w1, b1, w2, b2 = self.views()
        hidden = np.tanh(x @ w1 + b1)
        error = hidden @ w2 + b2 - y
        loss = float(np.mean(error**2))
        grad_out = 2 * error / len(x)
        grad_hidden = (grad_out @ w2.T) * (1 - hidden**2)
        for param, grad in (
            (w2, hidden.T @ grad_out),
            (b2, grad_out.sum(axis=0)),
            (w1, x.T @ grad_hidden),
            (b1, grad_hidden.sum(axis=0)),
        ):
            param -= learning_rate * grad
        return loss


def main() -> None:
    global requested
    args = _arguments()
    state = Path(os.environ.get("CPNODE_STATE_DIR", "state"))
    control_env = os.environ.get("CPNODE_CONTROL_DIR")
    control = Path(control_env) if control_env else None
    if control is not None:
        signal.signal(signal.SIGUSR1, _on_signal)
        (control / "ready").touch()
    data_rng = np.random.default_rng([args.seed, 0])
    x = data_rng.standard_normal((args.samples, args.features))
    truth = data_rng.standard_normal((args.features, 1))
    y = np.sin(x @ truth) + 0.1 * data_rng.standard_normal((args.samples, 1))
    model = Model(args.features, args.hidden, np.random.default_rng([args.seed, 1]))
    step, losses = 0, []
    if os.environ.get("CPNODE_RESTORE") == "1":
        saved = json.loads((state / "checkpoint.json").read_text())
        model.flat = np.load(state / "checkpoint.npy", allow_pickle=False)
        step, losses = saved["step"], saved["losses"]
        print(f"resumed at step {step}", flush=True)
    else:
        print(f"training {args.steps} steps, seed {args.seed}", flush=True)
    while step < args.steps:
        batch = np.random.default_rng([args.seed, 2, step]).integers(0, args.samples, args.batch)
        losses.append(model.step(x[batch], y[batch], args.learning_rate))
        step += 1
        if step % 50 == 0 or step == args.steps:
            print(f"step {step} loss {losses[-1]:.6f}", flush=True)
        if control is not None:
            wanted = _read_seq(control / "checkpoint.request")
            # The request file says whether a checkpoint is owed; SIGUSR1 only says "look now". A
            # signal arriving after the request was already seen must not write the state again.
            if wanted > _read_seq(control / "checkpoint.done"):
                requested = False
                state.mkdir(parents=True, exist_ok=True)
                _write_atomic(state / "checkpoint.npy", _npy(model.flat))
                body = {"step": step, "seed": args.seed, "losses": losses}
                _write_atomic(state / "checkpoint.json", json.dumps(body).encode())
                _write_atomic(control / "checkpoint.done", str(wanted).encode())
        if args.step_delay_ms:
            time.sleep(args.step_delay_ms / 1000)
    args.out.mkdir(parents=True, exist_ok=True)
    _write_atomic(args.out / "model.npy", _npy(model.flat))
    metrics = {
        "steps": step,
        "seed": args.seed,
        "final_loss": repr(losses[-1]),
        "first_loss": repr(losses[0]),
    }
    _write_atomic(args.out / "metrics.json", json.dumps(metrics, sort_keys=True).encode())
    print(f"done: final loss {losses[-1]:.6f}", flush=True)


if __name__ == "__main__":
    main()
