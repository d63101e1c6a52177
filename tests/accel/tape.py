"""A CPU stand-in for CUDA graphs, for testing `StepGraph` (itnas/accel/graphs.py) without a GPU:
`TapeGraph` records the aten ops a step dispatches, with their tensors and frozen arguments, and
replays that tape. A tape replay sees what a graph replay sees: a learning rate that was not
re-recorded stays stale, an input not copied into the static buffers stays old, and a host read
(`.item()`) inside the step is refused as CUDA capture would refuse it. A step recorded on a tape
also runs while it is recorded, so the recording call's step is not replayed again."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# aten ops a CUDA graph cannot record: reads of a tensor's value on the host (`.item()`, data-
# dependent shapes), and tensors made from host data (`torch.tensor(...)`: on CUDA a copy from
# host memory that a capture refuses; make such constants once, outside the step).
_HOST_READS = frozenset({"aten::_local_scalar_dense", "aten::is_nonzero", "aten::equal", "aten::nonzero",
                         "aten::_assert_async", "aten::lift_fresh"})


class HostReadInStep(RuntimeError):
    """A step exchanged data with the host (e.g. `.item()`), which a CUDA graph cannot record."""


class _Recorder(TorchDispatchMode):
    def __init__(self, tape: list) -> None:
        super().__init__()
        self.tape = tape

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._schema.name in _HOST_READS:
            raise HostReadInStep(f"{func._schema.name} inside a recorded step: a CUDA graph cannot record an "
                                 "exchange with the host; return tensors and read them after the step, and make "
                                 "constant tensors before it")
        out = func(*args, **kwargs)
        self.tape.append((func, args, kwargs, out))
        return out


# In-place ops that change only a tensor's shape or strides. The recorded tensor already has
# its final metadata (the same Python object went on to be squeezed, say, while recording), so a
# replay skips them and writes the producing op's result into that final shape.
_METADATA_OPS = frozenset({"aten::squeeze_", "aten::unsqueeze_", "aten::transpose_", "aten::t_",
                           "aten::as_strided_", "aten::swapdims_", "aten::swapaxes_", "aten::resize_",
                           "aten::resize_as_"})


def _write_back(recorded: Any, fresh: Any) -> None:
    """Copy a replayed op's results into the tensors its recording produced (which later ops
    and the caller hold), unless they share memory already (in-place ops, views)."""
    if isinstance(recorded, torch.Tensor):
        if recorded.untyped_storage().data_ptr() != fresh.untyped_storage().data_ptr():
            recorded.copy_(fresh if fresh.shape == recorded.shape else fresh.reshape(recorded.shape))
    elif isinstance(recorded, (list, tuple)):
        for r, f in zip(recorded, fresh):
            if f is not None:
                _write_back(r, f)


class TapeGraph:
    """A CPU stand-in for `torch.cuda.CUDAGraph` (see the module docstring): `capture()` is the
    context in which the step runs and is recorded; `replay()` re-runs the recorded aten ops on
    the recorded tensors. For tests: a tape holds every intermediate tensor of the step."""

    executes_on_capture = True
    warm_up_on_side_stream = False

    def __init__(self) -> None:
        self.tape: list = []

    def capture(self):
        return _Recorder(self.tape)

    @torch.no_grad()
    def replay(self) -> None:
        for func, args, kwargs, out in self.tape:
            if func._schema.name not in _METADATA_OPS:
                _write_back(out, func(*args, **kwargs))
