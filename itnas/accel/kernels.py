"""Faster kernels for the primitives of itnas/ops.py, swapped in by `use_fast_kernels`: the same
outputs (bit-identical in tests/accel) and gradients equal up to float rounding.

- On the CPU, depthwise convs with dilation 2 run as undilated convs on the input's row/column
  parity phases, and 5x5 depthwise convs get their weight gradient from four 3x3 ones: the
  CPU's dilated and 5x5 depthwise kernels (above all their backward) are several times slower.
- `BatchNorm` skips the `num_batches_tracked` counter, which nothing reads at a fixed momentum
  and which costs one kernel per BN per training forward (docs/performance.md).
- `AvgPool3x3` routes the backward of a channels-last CUDA input through the NCHW kernel,
  around a torch bug that returned wrong gradients there (pytorch/pytorch#188344). This one
  is a correctness fix, so the runtime applies it whenever channels-last runs on CUDA.
- `SafeFactorizedReduce` runs the two strided 1x1 convs of a channels-last CPU input in NCHW:
  oneDNN's weight gradient of a stride-2 1x1 conv on an NHWC input with fewer than 8 channels
  corrupts the heap (torch 2.14.1, oneDNN 3.12, AVX2: the process aborts or hangs). Real widths
  never have so few channels, tiny CPU runs (smoke, tests) do. Also a correctness fix, always on.

A swap changes a module's class to a subclass that has no state of its own (`_swap`):
parameters, buffers and state-dict keys stay as they are, so checkpoints load either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from itnas.ops import DilConv, FactorizedReduce


def is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _like_layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _swap(module: nn.Module, cls: type[nn.Module]) -> None:
    """Make `module` an instance of `cls`, a subclass of its class that only overrides methods."""
    assert issubclass(cls, type(module)) and "__init__" not in vars(cls), cls
    module.__class__ = cls


# ----------------------------------------------------------------------------- depthwise convs


def _phase_split(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] (H, W even) -> [4B, C, H/2, W/2]: the four (row, column) parity phases,
    phase-major, copied in the input's memory layout (channels-last stays channels-last)."""
    b, c, h, w = x.shape
    if is_channels_last(x):
        nhwc = x.permute(0, 2, 3, 1).reshape(b, h // 2, 2, w // 2, 2, c).permute(2, 4, 0, 1, 3, 5)
        return nhwc.reshape(4 * b, h // 2, w // 2, c).permute(0, 3, 1, 2)
    return x.reshape(b, c, h // 2, 2, w // 2, 2).permute(3, 5, 0, 1, 2, 4).reshape(4 * b, c, h // 2, w // 2)


def _phase_merge(y: torch.Tensor, b: int) -> torch.Tensor:
    """Inverse of `_phase_split`."""
    _, c, h, w = y.shape
    if is_channels_last(y):
        nhwc = y.permute(0, 2, 3, 1).reshape(2, 2, b, h, w, c).permute(2, 3, 0, 4, 1, 5)
        return nhwc.reshape(b, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
    return y.reshape(2, 2, b, c, h, w).permute(2, 3, 4, 0, 5, 1).reshape(b, c, 2 * h, 2 * w)


class _PhaseSplit(torch.autograd.Function):
    """`_phase_split` whose backward is `_phase_merge` of the gradient: autograd's own backward
    of the permute/reshape chain gathers element by element and costs more than the conv."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.channels_last = is_channels_last(x)
        ctx.batch = x.shape[0]
        return _phase_split(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _phase_merge(_like_layout(grad, ctx.channels_last), ctx.batch)


class _PhaseMerge(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y: torch.Tensor, batch: int) -> torch.Tensor:
        ctx.channels_last = is_channels_last(y)
        return _phase_merge(y, batch)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _phase_split(_like_layout(grad, ctx.channels_last)), None


class _Depthwise5x5(torch.autograd.Function):
    """A 5x5 depthwise conv (stride 1, padding 2) whose weight gradient is assembled from four
    3x3 ones: the 25 taps lie in four 3x3 blocks of a 6x6 grid, and each block's gradient is
    that of a 3x3 conv of the input shifted by the block's offset. The CPU's 5x5 depthwise
    weight-gradient kernel is 1.7-4.5x slower than four 3x3 ones at 16 px and up. Forward and input
    gradient are the plain kernels'; the weight gradient differs by float rounding only."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, weight, None, 1, 2, 1, weight.shape[0])
        # Under autocast the conv ran in y's dtype (bf16), and its gradient arrives in it: the
        # backward's kernels need their inputs in that dtype too (a no-op without autocast).
        ctx.save_for_backward(x.to(y.dtype), weight.to(y.dtype))
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, weight = ctx.saved_tensors
        groups = weight.shape[0]
        grad = _like_layout(grad, is_channels_last(x))
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [2, 2], [1, 1], False,
                                                         [0, 0], groups, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            w3 = weight.new_zeros(groups, 1, 3, 3)  # only its shape matters
            grid = weight.new_zeros(groups, 1, 6, 6)
            for a in (0, 3):  # block rows a..a+2 hold taps a-2 .. a (grid row 5, tap 3, is unused)
                for b in (0, 3):
                    # shifted[r, c] = x[r + a - 2, c + b - 2], zero outside; negative pads crop
                    shifted = F.pad(x, (2 - b, b, 2 - a, a))
                    grid[:, :, a:a + 3, b:b + 3] = torch.ops.aten.convolution_backward(
                        grad, shifted, w3, None, [1, 1], [0, 0], [1, 1], False, [0, 0], groups,
                        [False, True, False])[1]
            grad_w = grid[:, :, :5, :5].contiguous()
        return grad_x, grad_w


# Smallest feature map that gets `_Depthwise5x5` (below it the plain kernel is as fast).
BLOCKWISE_MIN_SIZE = 16


def _undilated_depthwise(weight: torch.Tensor, x: torch.Tensor, stride: int) -> torch.Tensor:
    k = weight.shape[-1]
    if (k == 5 and stride == 1 and x.device.type == "cpu"
            and min(x.shape[2], x.shape[3]) >= BLOCKWISE_MIN_SIZE):
        return _Depthwise5x5.apply(x, weight)
    return F.conv2d(x, weight, None, stride, k // 2, 1, weight.shape[0])


def dilated_depthwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` for a depthwise conv with dilation 2 and 'same' padding, computed without
    dilation: output pixel (y, x) only sees input pixels of its own row/column parity, so each
    parity phase is an undilated conv of the phase image (stride 2 keeps only the even phase)."""
    if conv.stride[0] == 2:
        even = _like_layout(x[:, :, 0::2, 0::2], is_channels_last(x))
        return _undilated_depthwise(conv.weight, even, 1)
    y = _undilated_depthwise(conv.weight, _PhaseSplit.apply(x), 1)
    return _PhaseMerge.apply(y, x.shape[0])


def _phases_apply(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether `dilated_depthwise` computes `conv(x)` (otherwise the plain conv runs)."""
    k, s = conv.kernel_size, conv.stride
    return (x.device.type == "cpu" and conv.dilation == (2, 2) and k[0] == k[1] and k[0] % 2 == 1
            and conv.padding == (k[0] - 1, k[0] - 1) and s[0] == s[1] and s[0] in (1, 2)
            and conv.groups == conv.in_channels == conv.out_channels and conv.bias is None
            and x.dim() == 4 and (s[0] == 2 or (x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0)))


def depthwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` for the depthwise conv of a DilConv/SepConv by the fastest route the CPU has:
    pixel phases for dilation 2, the block-wise weight gradient for 5x5; else the plain conv."""
    if _phases_apply(conv, x):
        return dilated_depthwise(conv, x)
    if (conv.dilation == (1, 1) and conv.kernel_size == (5, 5) and conv.padding == (2, 2)
            and conv.stride in ((1, 1), (2, 2)) and conv.bias is None and x.dim() == 4
            and conv.groups == conv.in_channels == conv.out_channels):
        return _undilated_depthwise(conv.weight, x, conv.stride[0])
    return conv._conv_forward(x, conv.weight, conv.bias)


class FastDepthwise(nn.Conv2d):
    """The depthwise conv of a DilConv, computed by `depthwise`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise(self, x)


# ----------------------------------------------------------------------------- BN and pooling


class BatchNorm(nn.BatchNorm2d):
    """nn.BatchNorm2d without the batch counter: with a fixed momentum (0.1 in every network
    here) `num_batches_tracked` is never read, and counting costs one kernel per BN per training
    forward, 929 per supernet step (docs/performance.md). The buffer stays, so state dicts keep
    their keys; outputs and running statistics are nn.BatchNorm2d's, bit for bit (tested).
    With momentum None (a cumulative average) it counts as torch does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.momentum is None or not self.track_running_stats:
            return super().forward(x)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)


class _AvgPoolNCHWBackward(torch.autograd.Function):
    """avg_pool2d (count_include_pad=False) whose backward runs the NCHW kernel on a contiguous
    copy of the gradient and hands the result back in channels-last.

    Works around pytorch/pytorch#188344: on CUDA, avg_pool2d's channels-last backward kernel
    ignored the padding offset and returned silently wrong input gradients whenever padding > 0
    (forward right; NCHW right; fixed upstream by pytorch/pytorch#188345, July 2026, after the
    torch 2.11 that the lent GPUs run). DARTS's avg_pool_3x3 pads by 1, so a channels-last
    supernet on the GPU got wrong gradients while its logits agreed (docs/performance.md). The
    two layout copies cost two small kernels per pooling backward; the gradient is the NCHW
    kernel's own, bit for bit."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
        ctx.shape, ctx.args = x.shape, (kernel, stride, padding)
        return F.avg_pool2d(x, kernel, stride, padding, count_include_pad=False)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        k, s, p = ctx.args
        like = grad.new_empty(ctx.shape)  # contiguous; the kernel reads only its shape and layout
        grad_x = torch.ops.aten.avg_pool2d_backward(grad.contiguous(), like, [k, k], [s, s], [p, p],
                                                    False, False, None)
        return grad_x.contiguous(memory_format=torch.channels_last), None, None, None


def avg_pool(x: torch.Tensor, kernel: int, stride: int, padding: int, nchw_backward: bool | None = None) -> torch.Tensor:
    """F.avg_pool2d(x, ..., count_include_pad=False), with the backward of a channels-last CUDA
    input taken by the NCHW kernel (`_AvgPoolNCHWBackward`). `nchw_backward` forces that route
    on or off (None: on exactly for CUDA channels-last input with padding, the broken case)."""
    if nchw_backward is None:
        nchw_backward = padding > 0 and x.is_cuda and is_channels_last(x)
    if nchw_backward and x.requires_grad:
        return _AvgPoolNCHWBackward.apply(x, kernel, stride, padding)
    return F.avg_pool2d(x, kernel, stride, padding, count_include_pad=False)


class AvgPool3x3(nn.AvgPool2d):
    """DARTS's avg_pool_3x3 (padding not counted), safe in channels-last on CUDA (`avg_pool`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool(x, self.kernel_size, self.stride, self.padding)


class SafeFactorizedReduce(FactorizedReduce):
    """FactorizedReduce whose convs take a channels-last CPU input in NCHW (module docstring).
    Its conv weights keep NCHW strides whatever memory format the network is moved to
    (`_apply`): a 1x1 channels-last weight counts as contiguous, and oneDNN would take the NHWC
    route for it even on an NCHW input. Their gradients then have the parameters' own strides, as
    DDP's buckets expect. The output goes back to channels-last."""

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for conv in (self.conv_1, self.conv_2):
            w = conv.weight
            if not w.is_cuda and w.stride() != _plain_strides(w.shape):
                conv.weight.data = w.data.clone(memory_format=torch.contiguous_format)
        return self

    def halves(self, r: torch.Tensor) -> torch.Tensor:
        if r.is_cuda or not is_channels_last(r):
            return super().halves(r)
        shifted = F.pad(r[:, :, 1:, 1:], (0, 1, 0, 1))
        y = torch.cat([self.conv_1(r.contiguous()), self.conv_2(shifted.contiguous())], dim=1)
        return self.bn(y.contiguous(memory_format=torch.channels_last))


def _plain_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _is_darts_avg_pool(m: nn.Module) -> bool:
    return type(m) is nn.AvgPool2d and m.kernel_size == 3 and m.padding == 1 and not m.count_include_pad


# ----------------------------------------------------------------------------- swapping them in


def use_fast_kernels(module: nn.Module, depthwise_convs: bool = True, batch_norm: bool = True) -> nn.Module:
    """Swap the faster kernels into every block of `module` (and the safe ones, always);
    returns `module`. The flags pick parts, for benchmarks/ablate_fast_paths.py."""
    use_safe_kernels(module)
    for m in module.modules():
        if depthwise_convs and type(m) is DilConv and type(m[1]) is nn.Conv2d:
            _swap(m[1], FastDepthwise)
        elif batch_norm and type(m) is nn.BatchNorm2d:
            _swap(m, BatchNorm)
    return module


def use_safe_kernels(module: nn.Module) -> nn.Module:
    """The channels-last-safe average pooling for every avg_pool_3x3 of `module`, and the
    channels-last-safe FactorizedReduce for every one of it."""
    for m in module.modules():
        if _is_darts_avg_pool(m):
            _swap(m, AvgPool3x3)
        elif type(m) is FactorizedReduce:
            _swap(m, SafeFactorizedReduce)
    return module
