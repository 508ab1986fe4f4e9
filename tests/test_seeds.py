"""Several seeds of the study: t-intervals, comparisons claimed only where the paired interval excludes 0."""
from __future__ import annotations

import json
import math

import pytest

from shortcutlab.study.seeds import Interval, compare, comparisons, measures, render, summarise, t_interval


def test_the_t_interval_of_three_values_uses_students_t_with_two_degrees_of_freedom():
    interval = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729749464 * 1.0 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n), s = 1
    assert interval.mean == pytest.approx(2.0)
    assert (interval.low, interval.high) == pytest.approx((2.0 - half, 2.0 + half))
    assert interval.n == 3


def test_one_seed_gives_a_point_and_never_a_claim():
    interval = t_interval([0.98])
    assert (interval.low, interval.high, interval.n) == (0.98, 0.98, 1) and not interval.excludes(0.5)
    assert compare("a", "b", [0.99], [0.90]).verdict == "not distinguishable at 1 seed"
    with pytest.raises(ValueError):
        t_interval([])


def test_a_consistent_paired_difference_is_claimed_and_a_noisy_one_is_not():
    # The same mean gap of 1 point, once steady across seeds and once swamped by seed-to-seed noise.
    steady = compare("A", "B", [0.981, 0.985, 0.983, 0.984], [0.971, 0.975, 0.972, 0.975])
    noisy = compare("A", "B", [0.990, 0.970, 0.985, 0.975], [0.971, 0.975, 0.962, 0.972])
    assert steady.verdict == "higher" and steady.difference.low > 0
    assert noisy.verdict == "not distinguishable at 4 seeds" and noisy.difference.low < 0 < noisy.difference.high
    assert compare("B", "A", [0.971, 0.975, 0.972, 0.975], [0.981, 0.985, 0.983, 0.984]).verdict == "lower"


def test_a_difference_with_no_spread_over_the_seeds_is_never_claimed():
    assert compare("a", "b", [0.935, 0.940], [0.933, 0.938]).verdict == "not distinguishable at 2 seeds"


def test_pairing_by_seed_finds_a_difference_that_unpaired_spreads_would_hide():
    first = [0.90, 0.95, 0.99]  # seeds differ a lot, but A beats B by 0.010 to 0.012 on every seed
    second = [0.89, 0.939, 0.978]
    assert compare("A", "B", first, second).verdict == "higher"
    assert t_interval(first).low < t_interval(second).high  # the two intervals overlap


def test_a_comparison_with_the_reports_number_is_one_sample():
    assert compare("GRL", "the report", [0.981, 0.983, 0.982], 0.9277).verdict == "higher"
    with pytest.raises(ValueError, match="one value per seed"):
        compare("A", "B", [0.9, 0.8], [0.9])


def test_measures_keep_model_numbers_and_leave_out_settings_timings_and_curves():
    results = {"config": {"seed": 1}, "timing": {"total_seconds": 3.0},
               "models": {"grl": {"hard_test_accuracy": 0.98, "train_seconds": 5.0, "cached": True, "epochs": 6,
                                  "history": {"train_loss": [1.0, 0.5]}, "hard_test_confusion": [[1, 2], [3, 4]]}},
               "robustness": {"eps_grid": [0.0, 0.05], "models": {"grl": {"robust_accuracy": [0.98, 0.1],
                                                                           "warnings": []}}}}
    assert measures(results) == {"models.grl.hard_test_accuracy": 0.98,
                                 "robustness.models.grl.robust_accuracy.0": 0.98,
                                 "robustness.models.grl.robust_accuracy.1": 0.1}


def test_no_task_setting_is_averaged_as_a_measure():
    from dataclasses import asdict

    from shortcutlab.study.task5_attacks import ROBUSTNESS
    from shortcutlab.study.task6_sae import SAESettings

    results = {"sae": {**asdict(SAESettings()), "d_in": 128, "d_hidden": 1024, "train_samples": 10_000, "fvu": 0.01},
               "robustness": {**asdict(ROBUSTNESS), "models": {"grl": {"clean_accuracy": 0.98}}}}
    assert measures(results) == {"sae.fvu": 0.01, "robustness.models.grl.clean_accuracy": 0.98}


def test_the_summary_compares_the_debiased_models_and_the_report_and_the_page_says_what_holds():
    def seed(consistency: float, grl: float) -> dict:
        return {"models": {"consistency": {"easy_val_accuracy": 0.98, "hard_test_accuracy": consistency},
                           "grl": {"easy_val_accuracy": 0.97, "hard_test_accuracy": grl}}}

    summary = summarise({1: seed(0.985, 0.982), 2: seed(0.983, 0.986), 3: seed(0.986, 0.983)})
    json.dumps(summary)  # results.json holds it as is
    assert summary["values"]["models.grl.hard_test_accuracy"] == [0.982, 0.986, 0.983]
    verdicts = {(c["first"], c["second"]): c["verdict"] for c in summary["comparisons"]}
    assert verdicts[("Color consistency", "GRL + augmentation")] == "not distinguishable at 3 seeds"
    assert verdicts[("Color consistency", "the report (96.27%)")] == "higher"
    page = render(summary, {1: "seeds/seed-1", 2: "seeds/seed-2", 3: "seeds/seed-3"})
    assert "| Color consistency | 98.00% ± 0.00% (n = 3) | 98.47% ± " in page
    assert "- Color consistency vs GRL + augmentation: not distinguishable at 3 seeds" in page
    assert "[seeds/seed-2/report.md](seeds/seed-2/report.md)" in page


def test_only_models_every_seed_measured_are_compared():
    values = {"models.consistency.hard_test_accuracy": [0.98, 0.97]}
    assert [c.second for c in comparisons(values)] == ["the report (96.27%)"]
    assert Interval(0.5, 0.4, 0.6, 2).text() == "50.00% ± 10.00% (n = 2)"


@pytest.mark.slow
def test_reproduce_with_seeds_runs_each_seed_into_its_folder_and_reports_intervals(tmp_path):
    from shortcutlab.cli import main

    out = tmp_path / "study"
    assert main(["reproduce", "--quick", "--tasks", "1", "--seeds", "2", "--seed", "3", "--out", str(out),
                 "--quiet", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    across = results["across_seeds"]
    assert across["seeds"] == [3, 4] and results["per_seed"] == {"3": "seeds/seed-3", "4": "seeds/seed-4"}
    per_seed = [json.loads((out / "seeds" / f"seed-{s}" / "results.json").read_text()) for s in (3, 4)]
    assert across["values"]["models.cheater.hard_test_accuracy"] == [
        r["models"]["cheater"]["hard_test_accuracy"] for r in per_seed]
    assert per_seed[0]["config"]["seed"] == 3 and per_seed[1]["config"]["seed"] == 4
    assert across["intervals"]["models.cheater.hard_test_accuracy"]["n"] == 2
    report = (out / "report.md").read_text()
    assert "2 seeds (3, 4)" in report and "| Cheater baseline |" in report
    assert main(["reproduce", "--seeds", "0", "--out", str(out)]) == 2  # a usage error, said clearly
