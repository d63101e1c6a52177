"""`itnas plan`: seed counts against the closed-form normal approximation, the config merged as
Snakemake merges it, job costs scaled by epochs, spreads and costs measured in a finished run,
and one-line errors for bad inputs."""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path

import pytest

from itnas import plan as planner
from itnas.cli import main
from itnas.errors import UserError
from itnas.power import Z_ALPHA, Z_POWER, level_runs_needed, power, runs_needed, t_quantile
from itnas.report import inputs
from tests.report.test_tables import _search, _selection, _train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the planner reads config/config.yaml as the Snakefile does


@pytest.mark.parametrize("sigma, delta, n", [(0.09, 0.19, 4), (0.09, 0.08, 20), (0.09, 0.04, 80),
                                             (0.15, 0.2, 9), (1.0, 1.0, 16)])
def test_seeds_per_arm_are_the_closed_form_normal_approximation(sigma, delta, n):
    closed = 2 * (Z_ALPHA + Z_POWER) ** 2 * sigma ** 2 / delta ** 2
    assert runs_needed(sigma, delta) == math.ceil(closed) == n  # SPEC.md section 9: 4, 20, 80
    assert power(sigma, delta, n) >= 0.8 > power(sigma, delta, n - 1)


def test_a_contrast_and_a_level_use_their_own_forms():
    # a difference of differences x + y - 2z: sum of squared weights 6 instead of 2
    assert runs_needed(0.09, 0.15, (1, 1, -2)) == math.ceil(6 * (Z_ALPHA + Z_POWER) ** 2 * 0.09 ** 2 / 0.15 ** 2) == 17
    assert level_runs_needed(0.09, 0.05) == math.ceil((Z_ALPHA + Z_POWER) ** 2 * 0.09 ** 2 / 0.05 ** 2) == 26
    assert runs_needed(0.09, 0.0) is None


@pytest.mark.parametrize("df, q", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452)])
def test_t_quantiles_match_the_printed_tables(df, q):
    assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-q, abs=1e-4)


def test_overlays_merge_mappings_and_replace_lists_as_snakemake_does():
    base = {"search": {"variants": ["a", "b"], "seeds": [0, 1]}, "results": "r"}
    merged = planner.merge(base, {"search": {"seeds": [5]}, "results": "s"})
    assert merged == {"search": {"variants": ["a", "b"], "seeds": [5]}, "results": "s"}
    assert base["search"]["seeds"] == [0, 1]  # the base is not changed


def _report(*configs, **kw):
    return planner.plan(list(configs), "config/paper/claims.yaml", "config/paper/published.yaml", "config/plan/noise.yaml",
                        "config/plan/costs.yaml", **kw)


def _line(report, claim_id):
    return next(x for x in report.lines if x.id == claim_id)


def test_the_paper_config_cannot_decide_table_2s_small_steps_and_decide_yaml_can():
    paper = _report("config/config.yaml")
    tiep = _line(paper, "tiep-helps")
    assert tiep.planned == 4 and tiep.needed == 20 and tiep.power < 0.3
    assert _line(paper, "transition-helps").power >= 0.8  # 0.19 points: 4 seeds suffice
    assert _line(paper, "gumbel-helps").needed == 80
    # the GPU-hours of the planned run, from config/plan/costs.yaml: 12 searches (itnas shares
    # gumbel_transition's), 16 + 4 selection candidates (each variant's, and random search's), then
    # (6 + 4 random) x 4 CIFAR-10 trainings, 3 x 2 on each of CIFAR-100, CINIC-10, SVHN, 2 x 1 ImageNet
    hours = paper.planned_hours
    assert hours["search"] == pytest.approx(12 * 0.61) and hours["select"] == pytest.approx(20 * 0.8)
    assert hours["train cifar10"] == pytest.approx(40 * 4.6) and hours["train svhn"] == pytest.approx(6 * 72)
    assert hours["train imagenet"] == pytest.approx(2 * 190)
    cheaper = _report("config/decide.yaml")
    assert sum(cheaper.planned_hours.values()) < sum(hours.values())
    for claim in ("tiep-helps", "transition-gain-exceeds-gumbel-gain", "itnas-beats-random-cells",
                  "itnas-beats-darts1-cifar100"):
        assert _line(cheaper, claim).power >= 0.8, claim
    assert _line(cheaper, "gumbel-helps").power < 0.8  # 80 seeds per cell: no sane budget


def test_a_config_that_shortens_trainings_scales_their_cost(tmp_path):
    overlay = tmp_path / "short-svhn.yaml"
    overlay.write_text("evaluate:\n  svhn:\n    cells: [itnas]\n    baselines: [DARTS_V1, DARTS_V2]\n"
                       "    seeds: [0, 1]\n    set: [epochs=150]\n")
    report = _report("config/config.yaml", str(overlay))
    assert report.planned_hours["train svhn"] == pytest.approx(6 * 72 * 150 / 600)


def test_a_finished_run_supplies_its_own_spreads_and_gpu_hours(tmp_path):
    root = tmp_path / "results"
    for v in inputs.VARIANTS:
        for s in (0, 1):
            _search(root, "cifar10", v, s, gpu_hours=0.5, standin=False)
        _selection(root, "cifar10", v, 0, (9.0, 10.0))
    errors = {"itnas": [2.4, 2.6], "DARTS_V2": [2.7, 2.8]}
    for label, values in errors.items():
        for s, e in enumerate(values):
            _train(root, "cifar10", label, s, e, standin=False)  # gpu_hours 5.0 each
    report = _report("config/config.yaml", from_run=root)
    pooled = math.sqrt(statistics.fmean(statistics.variance(v) for v in errors.values()))
    assert report.noise.seed_sd["cifar10"] == pytest.approx(pooled)
    assert report.noise.search_sd["cifar10"] == pytest.approx(statistics.stdev([9.0, 10.0]))
    assert report.noise.seed_sd["svhn"] == 0.074  # nothing measured there: the literature's stays
    # ... and the file's paper-scale job costs, which the report says
    assert report.costs.train["svhn"] == _report("config/config.yaml").costs.train["svhn"]
    assert any(n.startswith("no training measured on cifar100, cinic10, imagenet, svhn: their job costs come "
                            "from config/plan/costs.yaml") for n in report.noise.notes), report.noise.notes
    assert report.costs.search == pytest.approx(0.5) and report.costs.train["cifar10"] == pytest.approx(5.0)
    assert report.planned_hours["train cifar10"] == pytest.approx(40 * 5.0)
    assert _line(report, "tiep-helps").needed == runs_needed(pooled, 0.08)


def test_the_command_prints_a_table_and_json(capsys):
    assert main(["plan", "--configfile", "config/config.yaml"]) == 0
    out = capsys.readouterr().out
    assert "| TIEP improves on Gumbel + Transition (Table 2, step 3) | seeds | 0.08 | 0.090 | 4 |" in out
    assert "Planned run: 1,187.3 GPU-hours" in out
    assert main(["plan", "--configfile", "config/decide.yaml", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["configs"] == ["config/config.yaml", "config/decide.yaml"]
    assert {c["id"] for c in data["claims"]} >= {"itnas-error-cifar10", "gumbel-helps/searches"}


@pytest.mark.parametrize("text, message", [
    ("seed_sd: {cifar10: {value: 0.09}}\nsearch_sd: {}\nrandom_cell_sd: {}\n",
     "seed_sd.cifar10.source: every value cites where it comes from"),
    ("seed_sd: {cifar10: {value: -1, source: x}}\nsearch_sd: {}\nrandom_cell_sd: {}\n",
     "seed_sd.cifar10.value: expected a number >= 0"),
    ("seed_sd: {}\n", "'search_sd' missing"),
])
def test_a_bad_noise_model_is_a_one_line_error(tmp_path, capsys, text, message):
    bad = tmp_path / "noise.yaml"
    bad.write_text(text)
    with pytest.raises(UserError, match=message):
        planner.load_noise(bad)
    assert main(["plan", "--configfile", "config/config.yaml", "--noise", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and message in err[0]


def test_a_bad_config_overlay_names_its_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("evaluate:\n  cifar10:\n    seeds: many\n")
    assert main(["plan", "--configfile", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "evaluate.cifar10.seeds" in err[0]


def test_the_planner_loads_no_torch():
    import subprocess
    import sys

    code = "import sys, itnas.plan, itnas.cli.plan; print(any(m == 'torch' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "False", out.stderr
