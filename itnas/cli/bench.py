"""`itnas bench supernet|train`: time the search step or an evaluation-network training step."""

from __future__ import annotations

import argparse
import json
import sys

from itnas import variants
from itnas.cli import setup_logging
from itnas.cli.common import HelpFormatter, check_seed, set_threads
from itnas.errors import UserError

DESCRIPTION = """\
Time training steps on synthetic batches (docs/performance.md).

  itnas bench supernet --variant V --layers L --init-channels C --batch-size B --image-size H
                       --steps N --device {cpu,cuda} [--amp A] [--channels-last A]
                       [--compile [MODE]] --json
      One search step is an architecture step (first order) then a weight step (forward,
      backward, gradient clipping and the SGD update), run by the search's own Searcher.
      Prints step_s_median (the weight step), images_per_s, arch_step_s_median,
      search_step_s_median, peak memory, dispatches_per_step and arch_dispatches_per_step,
      with the settings echoed.

  itnas bench train --genotype NAME_OR_FILE [--protocol cifar|imagenet] [--layers L]
                    [--init-channels C] --batch-size B --steps N --device {cpu,cuda} --json
      One training step of the evaluation network (auxiliary head and drop-path included).

Timings are medians over N steps after --warmup untimed ones; on CUDA each step is synchronised.
`*_cpu_s_median` is process CPU time, the figure to compare on a machine shared with other work.
Peak memory is torch's max allocated bytes on CUDA and the process's peak RSS on CPU.
--data device draws batches from the GPU-resident pipeline (crop, flip, cutout on the device)
over random images, so its cost is in the step.
--compile [MODE] wraps the network in torch.compile: a bare --compile is mode 'default';
'reduce-overhead' (and 'max-autotune') replay CUDA graphs on CUDA, and so does 'cudagraphs',
torch's backend that records the captured graph's eager kernels without Inductor's code
generation (much less compile time, no fusion). Compilation happens in the warm-up steps, so
give it a few (--warmup 3; CUDA-graph modes record on the second call and replay from the third).
--compile step-graphs (supernet only) compiles nothing: each whole search step is recorded as
one CUDA graph after two eager steps and replayed (itnas/accel/graphs.py; eager on the CPU).
dispatches_per_step is the number of aten operators one weight step dispatches (forward,
backward, clipping, optimizer), counted once after the timed steps: a proxy of launch overhead
that does not need a GPU. Compare it between runs on the same device type (CUDA uses foreach
optimizer kernels, the CPU some extra fast-path ops). It is the eager step's count also under
--compile: a compiled module runs eagerly while the counter is active."""


def _tri(value: str) -> bool | str:
    v = value.lower()
    if v in ("auto",):
        return "auto"
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected auto, true or false, got {value!r}")


def _streams(value: str) -> int | str:
    if value == "auto":
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise argparse.ArgumentTypeError(f"expected auto or an integer >= 1, got {value!r}")


def _compile_mode(value: str) -> str:
    from itnas.runtime import JOB_MODES

    if value != "auto" and value not in JOB_MODES["search"]:
        raise argparse.ArgumentTypeError(f"expected auto or one of {', '.join(JOB_MODES['search'])}, got {value!r}")
    return value


def _common(p: argparse.ArgumentParser, batch: int | None) -> None:
    p.add_argument("--batch-size", type=int, default=batch, metavar="B",
                   help="images per step" + ("" if batch else " (default: the protocol's, 96)"))
    p.add_argument("--steps", type=int, default=10, metavar="N", help="timed steps")
    p.add_argument("--warmup", type=int, default=2, metavar="W", help="untimed steps first")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", type=_tri, default="auto", metavar="{auto,true,false}",
                   help="bf16 autocast (auto = off: slower on the H100 in eager mode)")
    p.add_argument("--channels-last", type=_tri, default="auto", metavar="{auto,true,false}",
                   help="channels-last memory format (auto = on for the CPU, off on CUDA)")
    p.add_argument("--compile", type=_compile_mode, nargs="?", const="default", default=False,
                   metavar="MODE", help="wrap the network in torch.compile; MODE: default (a bare "
                   "--compile), reduce-overhead (CUDA graphs), max-autotune, max-autotune-no-cudagraphs, "
                   "cudagraphs (CUDA graphs of the captured graph, no Inductor: quick to compile), step-graphs "
                   "(supernet only: each whole step recorded as one CUDA graph, nothing compiled), auto (the "
                   "configs' rule: reduce-overhead for training and step-graphs for the search on CUDA, eager on the CPU)")
    p.add_argument("--threads", type=int, metavar="T", help="torch CPU threads (default: torch's)")
    p.add_argument("--data", choices=("synthetic", "device"), default="synthetic",
                   help="fixed random batches, or the GPU-resident augmenting pipeline")
    p.add_argument("--eval-batch-size", type=int, default=None, metavar="E",
                   help="also time one evaluation batch of E images (eval mode, no grad); 0 = skip. "
                        "Default: the shipped configs' 250 (supernet) and 400 (train)")
    p.add_argument("--seed", type=int, default=0, help="seeds the network's weights and the batches")
    p.add_argument("--timing-lock", metavar="FILE",
                   help="time the steps only while holding an exclusive lock on FILE (created if "
                        "absent): benches started together then compile and warm up in parallel "
                        "but time one at a time; the JSON gives lock_wait_s")
    p.add_argument("--json", action="store_true", help="print one JSON line")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", formatter_class=HelpFormatter, description=DESCRIPTION,
                       help="time the search step or a training step")
    what = p.add_subparsers(dest="bench", metavar="{supernet,train}")
    s = what.add_parser("supernet", formatter_class=HelpFormatter, help="time the search supernet's steps",
                        description="Time the search supernet's weight and architecture steps.")
    s.add_argument("--variant", default="darts", choices=variants.NAMES, help="search variant")
    s.add_argument("--layers", type=int, default=8, metavar="L", help="cells")
    s.add_argument("--init-channels", type=int, default=16, metavar="C", help="initial channels C")
    s.add_argument("--image-size", type=int, default=32, metavar="H", help="input resolution")
    s.add_argument("--num-classes", type=int, default=10, help="classifier outputs")
    s.add_argument("--streams", type=_streams, default="auto", metavar="{auto,N}",
                   help="CUDA streams on which the ops into each cell node run side by side "
                        "(runtime.streams; auto = 4 under --compile step-graphs on CUDA, else 1)")
    _common(s, 64)
    s.set_defaults(func=run_supernet)
    t = what.add_parser("train", formatter_class=HelpFormatter, help="time an evaluation network's step",
                        description="Time one training step of an evaluation network.")
    t.add_argument("--genotype", default="DARTS_V2", metavar="NAME_OR_FILE",
                   help="a published genotype or a genotype JSON file")
    t.add_argument("--protocol", choices=("cifar", "imagenet"), default="cifar",
                   help="which evaluation network: CIFAR's or ImageNet's")
    t.add_argument("--layers", type=int, metavar="L", help="cells (default: the protocol's)")
    t.add_argument("--init-channels", type=int, metavar="C", help="initial channels (default: the protocol's)")
    t.add_argument("--image-size", type=int, metavar="H", help="input resolution (default: 32 / 224)")
    t.add_argument("--num-classes", type=int, default=10, help="classifier outputs")
    t.add_argument("--no-auxiliary", dest="auxiliary", action="store_false", help="leave out the auxiliary head")
    t.add_argument("--drop-path", type=float, default=0.2, help="drop-path probability")
    t.add_argument("--cutout", type=int, default=16, help="cutout side with --data device")
    _common(t, 96)
    t.set_defaults(func=run_train)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _check(args: argparse.Namespace) -> None:
    for name in ("batch_size", "steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        raise UserError("--warmup must not be negative")
    check_seed(args.seed)
    if args.eval_batch_size is not None and args.eval_batch_size < 0:
        raise UserError(f"--eval-batch-size {args.eval_batch_size}: expected 0 (skip) or more")
    if args.layers is not None and args.layers < 3:
        raise UserError(f"--layers {args.layers}: at least 3 (two reductions and a normal cell)")


def _eval_batch(args: argparse.Namespace) -> dict:
    """The `--eval-batch-size` keyword, if given (else the bench's own default)."""
    return {} if args.eval_batch_size is None else {"eval_batch_size": args.eval_batch_size}


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result), flush=True)
        return
    line = (f"{result['bench']} on {result['device']}: {result['step_s_median'] * 1e3:.1f} ms/step "
            f"({result['images_per_s']:.1f} images/s, CPU {result['step_cpu_s_median'] * 1e3:.1f} ms)")
    if result.get("arch_step_s_median") is not None:
        line += f", arch step {result['arch_step_s_median'] * 1e3:.1f} ms"
    if result.get("eval_step_s_median") is not None:
        line += f", eval batch of {result['eval_batch_size']} {result['eval_step_s_median'] * 1e3:.1f} ms"
    line += f", peak memory {result['peak_memory_bytes'] / 2**20:.0f} MiB ({result['peak_memory_kind']})"
    print(line, flush=True)


def run_supernet(args: argparse.Namespace) -> int:
    _check(args)
    set_threads(args.threads)
    from itnas.accel import bench

    result = bench.bench_supernet(
        steps=args.steps, warmup=args.warmup, variant=args.variant, layers=args.layers,
        init_channels=args.init_channels, batch_size=args.batch_size, image_size=args.image_size,
        device=args.device, amp=args.amp, channels_last=args.channels_last, compile=args.compile,
        num_classes=args.num_classes, seed=args.seed, data=args.data, lock=args.timing_lock,
        streams=args.streams, **_eval_batch(args))
    _print(result, args.json)
    return 0


def run_train(args: argparse.Namespace) -> int:
    _check(args)
    set_threads(args.threads)
    from itnas.accel import bench

    result = bench.bench_train(
        steps=args.steps, warmup=args.warmup, genotype=args.genotype, protocol=args.protocol,
        layers=args.layers, init_channels=args.init_channels, batch_size=args.batch_size or 96,
        image_size=args.image_size, device=args.device, amp=args.amp,
        channels_last=args.channels_last, compile=args.compile, num_classes=args.num_classes,
        auxiliary=args.auxiliary, drop_path=args.drop_path, seed=args.seed, data=args.data,
        cutout=args.cutout, lock=args.timing_lock, **_eval_batch(args))
    _print(result, args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m itnas.cli.bench supernet|train ...`: the same as `itnas bench`, without loading
    the other commands (and their dependencies), for a machine that has only torch and numpy."""
    parser = argparse.ArgumentParser(prog="itnas bench")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    setup_logging(quiet=True)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"itnas bench: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
