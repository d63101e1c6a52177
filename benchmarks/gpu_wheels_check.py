"""Prove that the wheels carried to the GPU machine are a complete set (issue 19's rehearsal).

The lent GPU machine runs CPython 3.12 on x86-64 Linux with no network; what it lacks travels as
the wheels pinned in benchmarks/gpu_wheels.txt, which `bash benchmarks/gpu_wheels.sh` downloads
into .whl/ and which are installed there with `pip install --no-index --no-deps --target`. Since
nothing resolves dependencies there, this script checks, here:

1. .whl/ holds exactly one wheel per pinned line and nothing else (--prune deletes the rest);
2. they install with `pip install --no-deps --target` into a temporary folder, under a Python 3.12
   when one is found (the same command as on the GPU machine), else with pip's --python-version
   3.12 --platform options;
3. a fresh subprocess of a venv-less interpreter reads their metadata with importlib.metadata and
   checks every Requires-Dist, markers evaluated for CPython 3.12 on x86-64 Linux with each
   extra that some carried wheel asks for: it must name a carried wheel whose version fits, or a
   package of the GPU image (IMAGE below; where its version there is known, that must fit too,
   but for TOLERATED ones); and every carried wheel must be needed by the roots (snakemake,
   mlflow-skinny, jsonschema, SQLAlchemy, alembic);
4. with a Python 3.12 and unless --no-smoke: a smoke test under it with only the carried wheels
   plus stand-ins for the image packages they need (downloaded into a second temporary folder):
   import snakemake, mlflow, jsonschema; an MlflowClient on a new sqlite:/// store creates the
   schema, an experiment and a run, logs params, metrics, tags and an artifact, as itnas.tracking
   does; `python -m snakemake` dry-runs and runs a two-rule workflow (validate, a gpu resource,
   a shell and a run: job).

Exit 1 on any missing or conflicting requirement or failed step.

    python3 benchmarks/gpu_wheels_check.py [--prune] [--files-only] [--no-smoke]

On the GPU machine, after the install, `python3 benchmarks/gpu_wheels_check.py --on-target
/tmp/site` (with /tmp/site on PYTHONPATH) checks the same requirements against what that
interpreter really sees, image versions included; it needs no network.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
except ImportError:  # a bare interpreter: pip's own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name
    from pip._vendor.packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
REQ = ROOT / "benchmarks" / "gpu_wheels.txt"
WHEELS = ROOT / ".whl"

# What the rehearsal imports: everything else carried must be needed by one of these.
ROOTS = ("snakemake", "mlflow-skinny", "jsonschema", "sqlalchemy", "alembic")

# The Python packages of the GPU machine's image (device docs, read 2026-11-17), normalized.
IMAGE = frozenset(canonicalize_name(n) for n in """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio
h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton
typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
xxhash yarl zipp
""".split())
# Versions seen there (a session's pip list); the others are unknown here.
IMAGE_VERSIONS = {"numpy": "2.5.2", "torch": "2.11.0", "torchvision": "0.26.0", "triton": "3.6.0"}
# Image packages carried on purpose, each for a version the image may lack.
SHADOWED = {"typing-extensions": "pydantic 2.14 needs >=4.16"}
# Image packages whose version may break a carried wheel's pin, harmlessly: a note, not a problem.
# The smoke test runs with their newest release.
TOLERATED = {"packaging": "snakemake pins <26 but only calls packaging.version.parse; "
                          "it ran with packaging 26.4 here"}

# Marker environment of the GPU machine's python3.
TARGET_ENV = {
    "implementation_name": "cpython", "implementation_version": "3.12.3", "os_name": "posix",
    "platform_machine": "x86_64", "platform_python_implementation": "CPython",
    "platform_release": "", "platform_system": "Linux", "platform_version": "",
    "python_full_version": "3.12.3", "python_version": "3.12", "sys_platform": "linux",
}
PLATFORM_ARGS = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
                 "--abi", "abi3", "--abi", "none", "--platform", "manylinux_2_28_x86_64",
                 "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                 "--only-binary=:all:"]


def pinned(req_file: Path) -> dict[str, str]:
    """name -> version of each `name==version` line."""
    out = {}
    for raw in req_file.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        if len(spec) != 1 or spec[0].operator != "==" or req.extras or req.marker:
            sys.exit(f"{req_file}: '{line}' is not a plain name==version pin")
        if canonicalize_name(req.name) in out:
            sys.exit(f"{req_file}: {req.name} is pinned twice")
        out[canonicalize_name(req.name)] = spec[0].version
    return out


def same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def check_files(pins: dict[str, str], wheels: Path, prune: bool) -> list[str]:
    """One wheel per pin in `wheels`, and nothing else (deleted with prune)."""
    problems, found = [], {}
    for whl in sorted(wheels.glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        key = canonicalize_name(name)
        if key in pins and same_version(version, pins[key]) and key not in found:
            found[key] = whl
        elif prune:
            print(f"   removing {whl.name}: not in {REQ.name}")
            whl.unlink()
        else:
            problems.append(f"{whl.name} is not pinned in {REQ.name} (or is a second copy)")
    for other in sorted(p for p in wheels.iterdir() if p.suffix != ".whl"):
        problems.append(f"{other.name} in {wheels} is not a wheel")
    problems += [f"no wheel of {name}=={version} in {wheels}"
                 for name, version in pins.items() if name not in found]
    return problems


def pip(cmd: list[str]) -> int:
    """Run a pip command, leaving out the noise of this machine's pip config (local mirrors)."""
    run = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, check=False)
    for line in run.stderr.splitlines():
        if "is ignored: it is neither" not in line and "as the 'root' user" not in line:
            print(line, file=sys.stderr)
    return run.returncode


def python312() -> str | None:
    """A Python 3.12 of this machine, outside any venv, or None."""
    candidates = [os.environ.get("PY312"), shutil.which("python3.12"), "/usr/bin/python3.12",
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))]
    for exe in filter(None, candidates):
        try:
            out = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                                 capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if out.stdout.strip() == "True":
            return exe
    return None


def bare_python(py312: str | None) -> str:
    """An interpreter outside the venv for the metadata check: the 3.12, else the base one."""
    return py312 or getattr(sys, "_base_executable", None) or sys.executable


# ----------------------------------------------------------------------------- the closure


def check_requirements(carried: dict[str, object], available: dict[str, str | None],
                       env: dict[str, str] | None) -> tuple[list[str], list[str], list[str]]:
    """Every Requires-Dist of every carried distribution against the carried ones and
    `available` (name -> version, None where unknown). Returns problems, notes and the
    requirement strings on `available` packages (for stand-ins)."""
    problems, notes, needs_available = [], [], []
    extras = {name: {""} for name in carried}
    edges: dict[str, set[str]] = {name: set() for name in carried}
    done, queue = set(), list(carried)
    while queue:
        name = queue.pop()
        dist = carried[name]
        for extra in sorted(extras[name]):
            if (name, extra) in done:
                continue
            done.add((name, extra))
            for text in dist.requires or []:
                req = Requirement(text)
                if extra and not (req.marker and "extra" in str(req.marker)):
                    continue  # the base requirements were checked with extra ""
                if req.marker:
                    marker_env = dict(env or {})
                    marker_env["extra"] = extra
                    if not req.marker.evaluate(marker_env):
                        continue
                dep = canonicalize_name(req.name)
                who = f"{name}{f'[{extra}]' if extra else ''}"
                if dep in carried:
                    edges[name].add(dep)
                    version = carried[dep].version
                    if not req.specifier.contains(version, prereleases=True):
                        problems.append(f"{who} needs {req}, but {dep} {version} is carried")
                    new = {canonicalize_name(e) for e in req.extras} - extras[dep]
                    if new:
                        extras[dep] |= new
                        queue.append(dep)
                elif dep in available:
                    needs_available.append(f"{req.name}{req.specifier}")
                    version = available[dep]
                    if version is not None and not req.specifier.contains(version, prereleases=True):
                        (notes if dep in TOLERATED else problems).append(
                            f"{who} needs {req}, but the image has {dep} {version}"
                            + (f" ({TOLERATED[dep]})" if dep in TOLERATED else ""))
                    elif req.extras:
                        notes.append(f"{who} needs {req}: the extras of {dep} are not checked")
                else:
                    problems.append(f"MISSING: {who} needs {req}: neither carried nor on the image")
    # Everything carried must be needed: reachable from a root.
    seen, stack = set(), [canonicalize_name(r) for r in ROOTS]
    for root in stack:
        if root not in carried:
            problems.append(f"the root {root} is not carried")
    while stack:
        name = stack.pop()
        if name in seen or name not in carried:
            continue
        seen.add(name)
        stack.extend(edges[name])
    problems += [f"{name} is carried but nothing of {', '.join(ROOTS)} needs it"
                 for name in sorted(set(carried) - seen)]
    return problems, notes, sorted(set(needs_available))


def carried_dists(site: Path) -> dict[str, object]:
    from importlib.metadata import distributions

    return {canonicalize_name(d.metadata["Name"]): d for d in distributions(path=[str(site)])}


def inner_check(site: Path, report: Path | None) -> int:
    """Step 3, in a fresh interpreter: the carried metadata against the carried set + IMAGE."""
    carried = carried_dists(site)
    available = {name: IMAGE_VERSIONS.get(name) for name in IMAGE}
    problems, notes, needs = check_requirements(carried, available, TARGET_ENV)
    for name in sorted(set(carried) & IMAGE):
        if name in SHADOWED:
            notes.append(f"{name} {carried[name].version} is carried over the image's: "
                         f"{SHADOWED[name]}")
        else:
            problems.append(f"{name} is on the image already; carry it only for a version conflict")
    print(f"   {len(carried)} distributions read with importlib.metadata "
          f"(Python {sys.version.split()[0]}, {sys.executable})")
    for line in notes:
        print(f"   note: {line}")
    for line in problems:
        print(f"   {line}")
    print(f"   image packages needed: {' '.join(sorted({Requirement(n).name for n in needs}))}")
    if report:
        report.write_text(json.dumps({"problems": problems, "needs_image": needs}))
    return 1 if problems else 0


def on_target(site: Path) -> int:
    """On the GPU machine: the carried metadata against what this interpreter sees."""
    from importlib.metadata import distributions

    carried = carried_dists(site)
    available: dict[str, str | None] = {}
    for d in distributions():
        available.setdefault(canonicalize_name(d.metadata["Name"]), d.version)
    for name in carried:
        available.pop(name, None)
    problems, notes, _ = check_requirements(carried, available, None)
    for line in notes + problems:
        print(line)
    print(f"{len(carried)} carried distributions in {site}: "
          f"{'complete' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


# ----------------------------------------------------------------------------- smoke test

SMOKE = r'''
import sys
from pathlib import Path

tmp, target = Path(sys.argv[1]), sys.argv[2]
import alembic, jsonschema, mlflow, packaging, snakemake, sqlalchemy
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

for mod in (mlflow, snakemake, jsonschema, sqlalchemy, alembic):
    assert mod.__file__.startswith(target), f"{mod.__name__} from {mod.__file__}"
print(f"   imports: snakemake {snakemake.__version__}, mlflow {mlflow.__version__}, "
      f"jsonschema, sqlalchemy {sqlalchemy.__version__}, alembic {alembic.__version__} "
      f"(image stand-in: packaging {packaging.__version__})")
jsonschema.Draft202012Validator({"type": "object"}).validate({})
uri = f"sqlite:///{tmp}/mlflow.db"
mlflow.set_tracking_uri(uri)
c = MlflowClient(tracking_uri=uri)
c.search_experiments()
exp = c.create_experiment("smoke", artifact_location=(tmp / "mlartifacts").as_uri())
run = c.create_run(exp, run_name="smoke", tags={"stage": "smoke"})
rid = run.info.run_id
c.log_batch(rid, params=[Param("lr", "0.1")], tags=[RunTag("rule", "smoke")],
            metrics=[Metric("loss", 0.5, 0, 1), Metric("loss", 0.25, 0, 2)])
(tmp / "genotype.json").write_text("{}")
c.log_artifact(rid, str(tmp / "genotype.json"), "figures")
c.set_terminated(rid, "FINISHED")
got = c.get_run(rid)
assert got.data.metrics["loss"] == 0.25 and got.data.params["lr"] == "0.1", got.data
assert got.info.status == "FINISHED"
assert (tmp / "mlartifacts" / rid / "artifacts" / "figures" / "genotype.json").exists()
assert c.get_experiment_by_name("smoke").experiment_id == exp
print(f"   mlflow: a sqlite:/// store with a run, params, metrics, tags and an artifact")
'''

SNAKEFILE = '''
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")
configfile: "config.yaml"
validate(config, "schema.yaml")

rule all:
    input: "out/b.txt"

rule a:
    output: "out/a.txt"
    resources: gpu=1
    shell: "echo {config[word]} > {output}"

rule b:
    input: "out/a.txt"
    output: "out/b.txt"
    run:
        import mlflow  # noqa: F401 - the job's interpreter sees the carried wheels too
        Path(output[0]).write_text(Path(input[0]).read_text().upper())
'''


def smoke(py312: str, site: Path, needs: list[str], tmp: Path) -> list[str]:
    """Step 4: the carried wheels at work under Python 3.12, beside stand-ins for the image."""
    stand = tmp / "stand-ins"
    print(f"== stand-ins for the image packages, into {stand}")
    needs = [name if (name := canonicalize_name(Requirement(n).name)) in TOLERATED else n
             for n in needs]
    if pip([py312, "-m", "pip", "install", "-q", "--disable-pip-version-check",
            "--target", str(stand), *needs]) != 0:
        return ["could not install stand-ins for the image packages"]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONPATH"] = f"{site}{os.pathsep}{stand}"
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not os.environ.get("VIRTUAL_ENV")
                                  or not p.startswith(os.environ["VIRTUAL_ENV"]))
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
    problems = []
    print("== smoke test under Python 3.12")
    work = tmp / "mlflow-smoke"
    work.mkdir()
    if subprocess.run([py312, "-s", "-c", SMOKE, str(work), str(site)], env=env, cwd=work,
                      check=False).returncode != 0:
        problems.append("the mlflow/import smoke test failed")
    wf = tmp / "workflow"
    wf.mkdir()
    (wf / "Snakefile").write_text(textwrap.dedent(SNAKEFILE))
    (wf / "config.yaml").write_text("word: carried\n")
    (wf / "schema.yaml").write_text(
        "$schema: https://json-schema.org/draft/2020-12/schema\n"
        "type: object\nproperties:\n  word: {type: string}\nrequired: [word]\n")
    smk = [py312, "-s", "-m", "snakemake", "--cores", "2", "--resources", "gpu=1"]
    for args in (["-n", "--quiet", "rules"], ["--quiet", "rules"]):
        run = subprocess.run(smk + args, env=env, cwd=wf, capture_output=True, text=True,
                             check=False)
        if run.returncode != 0:
            print(run.stdout[-3000:], run.stderr[-3000:], sep="\n")
            problems.append(f"snakemake {' '.join(args)} failed")
            break
    else:
        text = (wf / "out" / "b.txt").read_text().strip()
        if text != "CARRIED":
            problems.append(f"the workflow wrote {text!r}, not 'CARRIED'")
        else:
            print("   snakemake: validate, a gpu resource, a shell and a run: job, dry and real")
    return problems


# ----------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--wheels", type=Path, default=WHEELS)
    ap.add_argument("--req", type=Path, default=REQ)
    ap.add_argument("--prune", action="store_true", help="delete wheels that are not pinned")
    ap.add_argument("--files-only", action="store_true", help="step 1 only")
    ap.add_argument("--no-smoke", action="store_true", help="skip step 4")
    ap.add_argument("--on-target", type=Path, metavar="SITE",
                    help="on the GPU machine: check the wheels installed in SITE")
    ap.add_argument("--inner", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        return inner_check(args.inner, args.report)
    if args.on_target:
        return on_target(args.on_target)

    pins = pinned(args.req)
    print(f"== {len(pins)} pinned wheels in {args.wheels}")
    problems = check_files(pins, args.wheels, args.prune)
    if problems or args.files_only:
        for line in problems:
            print(f"   {line}")
        return 1 if problems else 0

    py312 = python312()
    with tempfile.TemporaryDirectory(prefix="gpu-wheels-") as tmp_name:
        tmp = Path(tmp_name)
        site = tmp / "site"
        wheels = sorted(str(p) for p in args.wheels.glob("*.whl"))
        base = ["-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                "--no-cache-dir", "--upgrade", "--disable-pip-version-check",
                "--target", str(site)]
        if py312:
            print(f"== installing them with {py312} (as on the GPU machine)")
            cmd = [py312, *base, *wheels]
        else:
            print("== no Python 3.12 here: installing them with pip's --python-version 3.12")
            cmd = [sys.executable, *base, *PLATFORM_ARGS, *wheels]
        if pip(cmd) != 0:
            print("   the install failed")
            return 1

        bare = bare_python(py312)
        print(f"== Requires-Dist of every wheel, in a fresh {bare} (markers for CPython 3.12, "
              "x86-64 Linux)")
        report = tmp / "report.json"
        env = {k: v for k, v in os.environ.items()
               if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        rc = subprocess.run([bare, "-I", str(Path(__file__).resolve()), "--inner", str(site),
                             "--report", str(report)], env=env, check=False).returncode
        if rc != 0 or not report.exists():
            print("   FAILED: the set is not complete")
            return 1
        needs = json.loads(report.read_text())["needs_image"]
        print("   complete: every requirement is carried or on the image")

        if args.no_smoke:
            return 0
        if not py312:
            print("== no Python 3.12 here: no import smoke test, only the metadata check")
            return 0
        problems = smoke(py312, site, needs, tmp)
        for line in problems:
            print(f"   FAILED: {line}")
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
