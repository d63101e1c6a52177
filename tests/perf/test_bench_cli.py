"""`itnas bench supernet|train` print one JSON line with the step figures and the settings."""

from __future__ import annotations

import json

import pytest

from itnas.cli import main

TINY_SUPERNET = ["--layers", "3", "--init-channels", "4", "--batch-size", "2", "--image-size", "16",
                 "--steps", "2", "--warmup", "1", "--device", "cpu", "--threads", "1", "--json"]


def _json(capsys) -> dict:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1
    return json.loads(lines[0])


@pytest.mark.parametrize("variant", ["darts", "itnas"])
def test_bench_supernet_prints_the_step_figures(capsys, variant):
    assert main(["bench", "supernet", "--variant", variant, *TINY_SUPERNET]) == 0
    out = _json(capsys)
    for key in ("step_s_median", "images_per_s", "arch_step_s_median", "search_step_s_median",
                "peak_memory_bytes", "step_cpu_s_median"):
        assert out[key] > 0, key
    assert out["variant"] == variant and out["layers"] == 3 and out["batch_size"] == 2
    assert out["amp"] is False and out["channels_last"] is False and out["compile"] is False
    assert out["images_per_s"] == pytest.approx(2 / out["step_s_median"])


def test_bench_supernet_runs_on_the_device_pipeline(capsys):
    assert main(["bench", "supernet", "--data", "device", "--channels-last", "true", *TINY_SUPERNET]) == 0
    out = _json(capsys)
    assert out["data"] == "device" and out["channels_last"] is True


def test_bench_train_prints_the_step_figures(capsys):
    assert main(["bench", "train", "--genotype", "DARTS_V2", "--layers", "3", "--init-channels", "4",
                 "--batch-size", "2", "--steps", "2", "--warmup", "1", "--device", "cpu",
                 "--threads", "1", "--json"]) == 0
    out = _json(capsys)
    assert out["bench"] == "train" and out["genotype"] == "DARTS_V2" and out["params"] > 0
    assert out["step_s_median"] > 0 and out["images_per_s"] > 0 and out["peak_memory_bytes"] > 0


def test_bench_refuses_nonsense_sizes(capsys):
    assert main(["bench", "supernet", "--steps", "0", "--device", "cpu"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
