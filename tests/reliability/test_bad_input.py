"""Bad input of every kind ends in one line naming the file or key, non-zero, before any work."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from itnas.checkpoint import load_checkpoint, save_checkpoint
from itnas.cli import main
from itnas.errors import CorruptFileError, UserError
from itnas.formats import load_arch_state
from itnas.genotypes import PUBLISHED
from itnas.space import load_genotype
from tests.reliability.errors import one_line_error as _one_line_error

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- configs

SEARCH_CASES = {
    "yaml syntax error": ("epochs: [1, 2\n", [], "YAML syntax error at line"),
    "top level is a list": ("- 1\n- 2\n", [], "expected a mapping"),
    "unknown top-level key": ("epochz: 3\n", [], "key 'epochz': unknown key"),
    "unknown nested key": ("optim:\n  lrr: 0.1\n", [], "key 'optim.lrr': unknown key"),
    "epochs is a string": ("epochs: ten\n", [], "key 'epochs': expected integer"),
    "zero epochs": ("epochs: 0\n", [], "key 'epochs': expected a number >= 1"),
    "negative epochs": ("epochs: -5\n", [], "key 'epochs': expected a number >= 1"),
    "negative lr": ("optim:\n  lr: -0.1\n", [], "key 'optim.lr'"),
    "momentum above 1": ("optim:\n  momentum: 1.5\n", [], "key 'optim.momentum'"),
    "odd channel count": ("model:\n  init_channels: 15\n", [], "key 'model.init_channels'"),
    "too few layers": ("model:\n  layers: 2\n", [], "key 'model.layers'"),
    "portion out of range": ("data:\n  train_portion: 1.5\n", [], "key 'data.train_portion'"),
    "batch size is a float": ("data:\n  batch_size: 6.5\n", [], "key 'data.batch_size'"),
    "betas wrong length": ("arch_optim:\n  betas: [0.5]\n", [], "key 'arch_optim.betas'"),
    "unknown order": ("arch_optim:\n  order: third\n", [], "key 'arch_optim.order'"),
    "flag is not boolean": ("arch:\n  gumbel: maybe\n", [], "key 'arch.gumbel'"),
    "tiep without transition": ("arch:\n  tiep: true\n  transition: false\n", [], "key 'arch.tiep'"),
    "tau rising": ("tau:\n  start: 0.5\n  end: 5\n", [], "key 'tau.end'"),
    "lr_min above lr": ("optim:\n  lr: 0.01\n  lr_min: 0.1\n", [], "key 'optim.lr_min'"),
    "unknown dataset": ("dataset: mnist\n", [], "unknown dataset 'mnist'"),
    "amp not a flag": ("runtime:\n  amp: sometimes\n", [], "key 'runtime.amp'"),
    "--set unknown key": ("", ["optim.lrr=1"], "key 'optim.lrr': unknown key"),
    "--set malformed": ("", ["epochs"], "--set 'epochs': expected dotted.key=value"),
    "--set wrong type": ("", ["epochs=abc"], "key 'epochs': expected integer"),
    "--set into a scalar": ("epochs: 3\n", ["epochs.x=1"], "'epochs' is not a section"),
    "--set a section to a value": ("", ["optim=3"], "key 'optim': expected object"),
    "empty recipe": ("# settings to come\n", ["epochs=2"], "search.yaml: the file is empty"),
    "python object tag": ("epochs: !!python/object/apply:os.system ['echo pwned']\n", [],
                          "YAML syntax error"),
}


@pytest.mark.parametrize("case", list(SEARCH_CASES))
def test_malformed_search_configs_are_refused_with_one_line(tmp_path, capsys, case):
    text, overrides, needle = SEARCH_CASES[case]
    cfg = tmp_path / "search.yaml"
    cfg.write_text(text)
    # No text: no recipe, the schema's defaults (an empty recipe file is refused).
    args = ["search", *(["--config", str(cfg)] if text else []), "--seed", "0", "--out", str(tmp_path / "run")]
    for item in overrides:
        args += ["--set", item]
    err = _one_line_error(capsys, main(args))
    assert needle in err, err
    assert str(cfg) in err or "--set" in err  # names the file, or the argument at fault
    assert not (tmp_path / "run").exists()


def test_a_missing_config_file_is_one_line(tmp_path, capsys):
    err = _one_line_error(capsys, main(["search", "--config", str(tmp_path / "nope.yaml"), "--seed", "0",
                                        "--out", str(tmp_path / "run")]))
    assert "nope.yaml: config file not found" in err


def test_yaml_python_tags_never_execute(tmp_path, capsys):
    marker = tmp_path / "pwned"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"epochs: !!python/object/apply:os.system ['touch {marker}']\n")
    main(["search", "--config", str(cfg), "--seed", "0", "--out", str(tmp_path / "run")])
    assert not marker.exists()


# --------------------------------------------------------------------------- files on disk


def _checkpoint(tmp_path) -> Path:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "payload": {"w": torch.arange(10.0)}})
    return path


def test_a_sound_checkpoint_round_trips(tmp_path):
    assert torch.equal(load_checkpoint(_checkpoint(tmp_path))["payload"]["w"], torch.arange(10.0))


@pytest.mark.parametrize("damage", ["truncate", "flip a byte", "empty", "not ours"])
def test_damaged_checkpoints_are_refused_with_one_line(tmp_path, damage):
    path = _checkpoint(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip a byte":
        data[-40] ^= 0xFF
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(b"PK\x03\x04" + bytes(100))
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_checkpoint_carrying_a_malicious_pickle_is_refused_without_running_it(tmp_path):
    """Even with a valid digest (an attacker can recompute it), weights_only=True refuses code."""
    import hashlib
    import io

    from itnas.checkpoint import MAGIC

    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = str(marker)
    buffer = io.BytesIO()
    torch.save({"payload": exploit}, buffer, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    body = buffer.getvalue()
    path = tmp_path / "evil.pt"
    path.write_bytes(MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
    with pytest.raises(CorruptFileError, match="refused by the safe loader"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_search_never_falls_back_to_fresh_weights_over_a_bad_checkpoint(tmp_path, capsys,
                                                                           tiny_search_overrides):
    out = tmp_path / "run"
    args = ["-q", "search", "--config", "config/recipes/search.yaml", "--variant", "darts", "--seed", "0",
            "--out", str(out)]
    for item in tiny_search_overrides + ["epochs=1"]:
        args += ["--set", item]
    assert main(args) == 0
    (out / "metrics.json").unlink()
    ckpt = out / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    capsys.readouterr()
    err = _one_line_error(capsys, main(args))
    assert "checkpoint failed its sha256 check" in err
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize("text,needle", [
    ('{"normal": [["sep_conv_3x3", 0]', "not valid JSON"),
    ("", "not valid JSON"),
    (json.dumps(PUBLISHED["DARTS_V2"][0].to_json()).replace("max_pool_3x3", "max_pool_9x9"), "unknown op"),
])
def test_truncated_or_tampered_genotypes_are_refused(tmp_path, text, needle):
    path = tmp_path / "g.json"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_genotype(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_truncated_arch_state_is_refused(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"format": "itnas-arch-state/1", "primitives": [')
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        load_arch_state(path)


# --------------------------------------------------------------------------- divergence


def test_a_nan_loss_stops_the_search_naming_epoch_and_step_and_keeps_the_last_checkpoint(
        tmp_path, capsys, tiny_search_overrides, monkeypatch):
    out = tmp_path / "run"
    args = ["-q", "search", "--config", "config/recipes/search.yaml", "--variant", "itnas", "--seed", "0",
            "--out", str(out)]
    for item in tiny_search_overrides + ["epochs=3"]:
        args += ["--set", item]
    from itnas.search.loop import Searcher

    calls = {"n": 0}
    original = Searcher.weight_step

    def poisoned(self, x, y):
        calls["n"] += 1
        loss, acc = original(self, x, y)
        return (float("nan") if calls["n"] == 4 else loss), acc  # epoch 2, step 2

    monkeypatch.setattr(Searcher, "weight_step", poisoned)
    err = _one_line_error(capsys, main(args))
    assert "epoch 2, step 2" in err and "nan" in err.lower()
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 1  # the last good checkpoint, from epoch 1
    assert not (out / "metrics.json").exists()


# --------------------------------------------------------------------------- code hygiene


def test_no_shell_command_is_built_from_strings_and_every_torch_load_is_safe():
    offenders = []
    for path in (REPO / "itnas").rglob("*.py"):
        text = path.read_text()
        for bad in ("shell=True", "os.system(", "os.popen(", "yaml.load(", "pickle.load"):
            if bad in text:
                offenders.append(f"{path.name}: {bad}")
        for line in text.splitlines():
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{path.name}: {line.strip()}")
    assert not offenders, offenders


def test_user_errors_from_a_real_process_have_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "itnas.cli", "derive", "--arch-state", str(tmp_path / "x.json"),
                           "--method", "tiep", "--out", str(tmp_path / "g.json")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "x.json: arch-state file not found" in proc.stderr
