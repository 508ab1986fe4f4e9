"""Does `shortcutlab reproduce` run the study end to end, cache its models and fail with clear messages?"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from shortcutlab.cli import main
from shortcutlab.errors import ShortcutlabError
from shortcutlab.study import parse_tasks


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, study_artifacts):
    """`reproduce --quick` over all tasks (0-6), starting from the run's trained models:
    --quick and pretrained() on the embedded digits share one cache, so this also proves the cache key matches."""
    out = tmp_path_factory.mktemp("study") / "artifacts"
    shutil.copytree(study_artifacts / "models", out / "models")
    assert main(["reproduce", "--quick", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    return out


@pytest.mark.slow
def test_reproduce_quick_writes_results_report_and_figures(quick_run):
    results = json.loads((quick_run / "results.json").read_text())
    splits = results["data"]["splits"]
    assert results["data"]["source"] == "embedded"
    assert {name: splits[name]["size"] for name in splits} == {"train": 3600, "val": 400, "hard_test": 1000}
    assert splits["hard_test"]["dominant_rate"] == 0.0
    assert abs(splits["train"]["dominant_rate"] - 0.95) < 0.01
    cheater = results["models"]["cheater"]
    assert {"easy_val_accuracy", "hard_test_accuracy", "train_seconds"} <= set(cheater)
    # the shortcut shows even on the small embedded subset
    assert cheater["easy_val_accuracy"] >= 0.85 and cheater["hard_test_accuracy"] <= 0.25
    assert results["timing"]["total_seconds"] > 0
    report = (quick_run / "report.md").read_text()
    assert "| Hard test | 6.25% |" in report and "## Task 0" in report
    assert "Model selection on validation only" in report
    for relative in results["figures"].values():
        assert (quick_run / relative).stat().st_size > 5000
        assert f"]({relative})" in report


@pytest.mark.slow
def test_reproduce_quick_measures_tasks_2_to_6_the_way_the_science_says(quick_run):
    results = json.loads((quick_run / "results.json").read_text())
    models = results["models"]
    for name in ("consistency", "grl"):
        assert {"easy_val_accuracy", "hard_test_accuracy", "train_seconds"} <= set(models[name])
        assert models[name]["hard_test_accuracy"] > models["cheater"]["hard_test_accuracy"] + 0.5
    assert results["recolor_invariance"]["correct"]["consistency"] >= 9
    # the control: recolor augmentation alone already repairs the shortcut (adversarial training is opt-in: its
    # science is tested in test_metrics.py on the same cached models)
    assert models["augmentation"]["hard_test_accuracy"] > models["cheater"]["hard_test_accuracy"] + 0.5
    assert "adversarial" not in models
    # the references: the same network where color carries no label information, and on white strokes
    for name in ("unbiased", "grayscale"):
        assert models[name]["hard_test_accuracy"] > models["cheater"]["hard_test_accuracy"] + 0.5
    robustness = results["robustness"]
    curves = {name: entry["robust_accuracy"] for name, entry in robustness["models"].items()}
    assert set(curves) == {"cheater", "consistency", "grl", "augmentation"}
    assert robustness["eps_grid"] == [0.0, 0.02, 0.05]
    # each budget is attacked on its own, so nothing but the models makes these curves fall monotonically
    assert all(a >= b for curve in curves.values() for a, b in zip(curve, curve[1:]))
    actmax = results["actmax"]["models"]
    assert actmax["cheater"]["mean_class_color_pixel_share"] > 3 * actmax["consistency"]["mean_class_color_pixel_share"]
    attack = results["attack"]
    assert attack["count"] >= 50 and attack["eps"] == 0.05
    for entry in attack["models"].values():
        assert entry["max_linf"] <= attack["eps"] + 1e-6
        assert entry["success_by_eps"][-1] >= entry["success_by_eps"][0]  # a larger ball never hurts the attacker
    gradcam = results["gradcam"]["models"]
    for entry in gradcam.values():  # every model's map finds what it uses: deleting by it beats a random order
        assert entry["deletion_auc"] < entry["deletion_auc_random_order"]
    # the color-only perturbation separates the models where CAM mass on strokes cannot
    assert gradcam["cheater"]["recolor_prediction_kept"] < 0.5 < gradcam["consistency"]["recolor_prediction_kept"]
    assert gradcam["cheater"]["recolor_map_correlation"] < gradcam["consistency"]["recolor_map_correlation"]
    sae = results["sae"]
    assert {"mse", "fvu", "l0", "dead_fraction"} <= set(sae["metrics_hard_test"])
    assert sae["surgery"]["ablate_random_latents_control"]["easy_val_accuracy"] > 0.8
    report = (quick_run / "report.md").read_text()
    for heading in ("## Task 2", "## Task 3", "## Task 4", "## Task 5", "## Task 6"):
        assert heading in report
    assert all(model["cached"] for model in models.values())  # --quick reused pretrained()'s models
    assert results["config"]["resolved_device"] == "cpu"


@pytest.mark.slow
def test_report_numbers_are_formatted_for_people(quick_run):
    report = (quick_run / "report.md").read_text()
    assert not re.findall(r"\d\.\d{5,}", report), "a raw float in report.md"
    assert not re.findall(r"\bnan\b", report, flags=re.IGNORECASE)


@pytest.mark.slow
def test_reproduce_reuses_the_cached_model_unless_forced(quick_run, capsys):
    first = json.loads((quick_run / "results.json").read_text())["models"]["cheater"]
    assert main(["reproduce", "--quick", "--tasks", "1", "--out", str(quick_run), "--quiet"]) == 0
    again = json.loads((quick_run / "results.json").read_text())["models"]["cheater"]
    assert again["cached"] and again["hard_test_accuracy"] == first["hard_test_accuracy"]
    capsys.readouterr()
    assert main(["reproduce", "--quick", "--tasks", "1", "--out", str(quick_run), "--force"]) == 0
    log = capsys.readouterr()  # not a terminal: one line per trained model, no progress bar's refreshes
    assert "\r" not in log.out + log.err and "[shortcutlab] cheater: training on" in log.out
    assert [line for line in log.err.splitlines() if line.startswith("cheater: ")], log.err
    forced = json.loads((quick_run / "results.json").read_text())["models"]["cheater"]
    # retrained from scratch, and training is deterministic for a seed on the CPU
    assert not forced["cached"] and forced["hard_test_accuracy"] == first["hard_test_accuracy"]


def test_parse_tasks_accepts_lists_and_names_known_tasks():
    assert parse_tasks("1,0, 1") == (0, 1)
    with pytest.raises(ShortcutlabError, match="0, 1"):
        parse_tasks("0,99")
    with pytest.raises(ShortcutlabError, match="comma-separated"):
        parse_tasks("zero")


def test_bad_tasks_exit_2_with_a_message(tmp_path, capsys):
    assert main(["reproduce", "--tasks", "7", "--out", str(tmp_path)]) == 2
    assert "unknown task" in capsys.readouterr().err


def test_missing_data_folder_exits_2_naming_it(tmp_path, capsys):
    assert main(["reproduce", "--tasks", "0", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 2
    assert "absent" in capsys.readouterr().err


def test_module_entry_point_shows_help():
    done = subprocess.run([sys.executable, "-m", "shortcutlab", "reproduce", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--quick" in done.stdout


def test_the_opt_in_flags_reach_the_study_and_the_default_run_leaves_them_out(tmp_path, monkeypatch):
    import shortcutlab.study

    seen = []
    monkeypatch.setattr(shortcutlab.study, "run_study", seen.append)
    assert main(["reproduce", "--quick", "--adversarial", "--full-curves", "--grl-ablation", "--dominant-rates",
                 "1,0.99", "--out", str(tmp_path)]) == 0
    assert main(["reproduce", "--quick", "--out", str(tmp_path)]) == 0
    assert [(c.adversarial, c.full_curves, c.grl_ablation, c.dominant_rates) for c in seen] == [
        (True, True, True, (0.99, 1.0)), (False, False, False, ())]
    assert main(["reproduce", "--quick", "--dominant-rates", "0.95,2", "--out", str(tmp_path)]) == 2
