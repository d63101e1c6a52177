"""Independent branches of a step on several CUDA streams (`runtime.streams`).

Why: recorded as a CUDA graph (`compile: step-graphs`), the search step is no longer bound by
the host but by the GPU running about 12,000 small kernels one after another (docs/
performance.md: 108 ms for the 8-cell supernet's weight step on an H200, 0.3 of the eager step).
At batch 64 and 16-64 channels one kernel fills a fraction of the GPU, and the seven ops on the
edges into a node do not depend on one another. Issued on different streams, they become
parallel branches of the recorded graph, and the GPU runs them side by side. Autograd runs each
op's backward on the stream of its forward, so the backward branches the same way.

The protocol (`run_branches`): the calling stream forks (every side stream waits for what it
has issued so far), branch k runs on side stream k mod n, and the calling stream then joins
(waits for every side stream). A branch may read tensors made before the fork and must not
share lazily computed ones with another branch: compute those before `run_branches`. Each
branch computes what it computed on one stream, kernel for kernel, so the results are the same
up to the algorithms cuDNN picks (it picks per shape, not per stream).

Memory, which the caching allocator tracks per stream of allocation:
- a branch's output, made on a side stream and freed after the join, is reused by that stream
  only after its next fork, which waits for everything the calling stream issued before;
- a tensor made on the calling stream and read by a branch stays alive to the join within a
  forward. In a backward, though, autograd frees a saved tensor as soon as the op that needs it
  has been issued, and the calling stream could then reuse its memory while a side stream still
  reads it. Steps that branch therefore run their backward with `retain_graph=True`
  (`backward_kwargs`): the saved tensors live until the step ends, after autograd has made the
  calling stream wait for every stream its backward used.

On the CPU, and with one stream, the branches simply run in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# Side streams, per device index and count, made once: a CUDA-graph capture must not create
# them, and the allocator's cached blocks are per stream.
_STREAMS: dict[tuple[int, int], list[torch.cuda.Stream]] = {}


def side_streams(device: torch.device, n: int) -> list[torch.cuda.Stream]:
    """`n` side streams of CUDA `device`, the same ones on every call."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    key = (index, n)
    if key not in _STREAMS:
        _STREAMS[key] = [torch.cuda.Stream(device=index) for _ in range(n)]
    return _STREAMS[key]


def run_branches(branches: Sequence[Callable[[], torch.Tensor]], device: torch.device,
                 streams: int) -> list[torch.Tensor]:
    """[b() for b in branches], with branch k on side stream k mod `streams` of a CUDA `device`
    (the protocol in the module docstring); in order on the calling stream for a CPU device or
    `streams` < 2."""
    if streams < 2 or device.type != "cuda" or len(branches) < 2:
        return [b() for b in branches]
    main = torch.cuda.current_stream(device)
    used = side_streams(device, streams)[:len(branches)]
    for s in used:
        s.wait_stream(main)
    out = []
    for k, branch in enumerate(branches):
        with torch.cuda.stream(used[k % len(used)]):
            out.append(branch())
    for s in used:
        main.wait_stream(s)
    return out


def backward_kwargs(streams: int, device: torch.device) -> dict:
    """Keyword arguments for the backward of a step whose forward branched: keep its saved
    tensors to the end of the step (module docstring, 'Memory')."""
    return {"retain_graph": True} if streams > 1 and device.type == "cuda" else {}
