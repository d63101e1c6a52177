"""Self-verifying training checkpoints, written atomically and loaded with `weights_only=True`.

On disk: a magic line, the sha256 of the payload, then the payload as `torch.save` wrote it.
A truncated or tampered file fails the digest and is reported in one line; nothing ever
falls back silently to fresh weights. The payload holds only tensors and plain containers,
so `torch.load(..., weights_only=True)` reads it and a pickle carrying code is refused.
"""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from itnas.errors import CorruptFileError
from itnas.files import write_bytes

MAGIC = b"ITNAS-CHECKPOINT/1\n"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    digest = hashlib.sha256(body).hexdigest().encode()
    write_bytes(path, MAGIC + digest + b"\n" + body)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptFileError(f"{path}: cannot read checkpoint: {exc.strerror or exc}") from None
    if not data.startswith(MAGIC):
        raise CorruptFileError(f"{path}: not an itnas checkpoint (bad header); delete it to start over")
    header_end = len(MAGIC) + 64
    digest, body = data[len(MAGIC):header_end], data[header_end + 1:]
    if len(data) <= header_end or data[header_end:header_end + 1] != b"\n":
        raise CorruptFileError(f"{path}: checkpoint is truncated; delete it to start over")
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise CorruptFileError(f"{path}: checkpoint failed its sha256 check (truncated or modified); "
                               "delete it to start over")
    try:
        return torch.load(io.BytesIO(body), map_location=map_location, weights_only=True)
    except Exception as exc:  # a digest-valid file that still fails is hostile or from elsewhere
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CorruptFileError(f"{path}: checkpoint refused by the safe loader: {first[:200]}") from None


def load_weights(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a plain `state_dict` file (final weights) with the safe loader."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CorruptFileError(f"{path}: weights file not found") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CorruptFileError(f"{path}: weights refused by the safe loader: {first[:200]}") from None


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor]) -> None:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    write_bytes(path, buffer.getvalue())


# ----------------------------------------------------------------------------- RNG state


def capture_rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, in a form the safe loader accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": {"key": np_state[0], "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4]),
                  "keys": torch.from_numpy(np_state[1].astype(np.int64))},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuples(state["python"]))
    np_state = state["numpy"]
    np.random.set_state((np_state["key"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(obj: Any) -> Any:
    return [_to_lists(x) for x in obj] if isinstance(obj, (tuple, list)) else obj


def _to_tuples(obj: Any) -> Any:
    return tuple(_to_tuples(x) for x in obj) if isinstance(obj, list) else obj
