"""The correlation sweep (--dominant-rates), the references and GRL ablation it draws on, and the run estimate."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from shortcutlab.data import UNINFORMATIVE_RATE, ColoredMNIST, color_given_digit, dominant_color_rate
from shortcutlab.errors import ShortcutlabError
from shortcutlab.study.cache import MODEL_SPECS, SWEEP_MODELS, checkpoint_name, spec_for
from shortcutlab.study.sweep import breaking_rate, parse_rates, report


def test_rates_parse_sorted_and_out_of_range_rates_are_refused_with_what_to_type():
    assert parse_rates("1, 0.95,0.99") == (0.95, 0.99, 1.0)
    for text in ("0.95,x", "1.5", "0.05", ","):
        with pytest.raises(ShortcutlabError, match="--dominant-rates"):
            parse_rates(text)


def test_a_model_breaks_at_the_rate_from_which_it_stays_below_the_pass_mark():
    rates = [0.95, 0.98, 0.99, 1.0]
    assert breaking_rate(rates, [0.9, 0.8, 0.75, 0.72], 0.7) is None
    assert breaking_rate(rates, [0.9, 0.8, 0.6, 0.2], 0.7) == 0.99
    assert breaking_rate(rates, [0.9, 0.6, 0.8, 0.2], 0.7) == 1.0  # a dip that recovers is not where it breaks
    assert breaking_rate(rates, [0.5, 0.4, 0.3, 0.2], 0.7) == 0.95


def test_the_sweep_report_says_where_each_model_breaks_and_why():
    sweep = {"rates": [0.95, 1.0], "pass_mark": 0.7,
             "models": {"erm": {"hard_test_accuracy": [0.4, 0.02]}, "grl": {"hard_test_accuracy": [0.95, 0.95]},
                        "grl_no_augmentation": {"hard_test_accuracy": [0.8, 0.1]}},
             "references": {"unbiased": 0.97, "grayscale": 0.98}}
    text = "\n".join(report({"sweep": sweep}))
    assert "| ERM, whole split | 40.00% | 2.00% |" in text
    assert "| Unbiased colors (reference, any rate) | 97.00% | 97.00% |" in text
    assert "ERM, whole split: below the goal at every rate" in text
    assert "GRL + augmentation: holds at every rate" in text
    assert "GRL, own colors (no augmentation): breaks from rate 1 (80.00% at 0.95, 10.00% at 1)" in text
    assert "the color head can only predict the digit" in text


def test_the_unbiased_reference_trains_where_every_digit_takes_every_color_equally_often():
    spec = MODEL_SPECS["unbiased"]
    assert spec.bias == UNINFORMATIVE_RATE and spec.recipe is MODEL_SPECS["erm"].recipe
    from scipy.stats import chi2_contingency

    def independence_p_value(bias: float) -> float:
        split = ColoredMNIST("train", root="embedded", bias=bias)
        counts = torch.zeros(10, 10, dtype=torch.int64).index_put_(
            (split.labels, split.color_ids), torch.ones(len(split), dtype=torch.int64), accumulate=True)
        return float(chi2_contingency(counts.numpy()).pvalue)

    split = ColoredMNIST("train", root="embedded", **spec.data_options())
    labels, color_ids = split.labels, split.color_ids
    counts = torch.bincount(labels, minlength=10)
    assert torch.allclose(color_given_digit(labels, color_ids).diagonal(), (counts * 0.1).round() / counts)
    assert abs(dominant_color_rate(labels, color_ids) - 0.1) < 1 / 360
    # Which color a digit takes tells nothing of the digit (a chi-squared test of independence cannot reject it),
    # where the study's 95% split is as far from independent as a split gets.
    assert independence_p_value(spec.bias) > 1e-3 and independence_p_value(0.95) < 1e-100


def test_grayscale_splits_draw_the_same_digits_and_backgrounds_in_white_with_no_color():
    colored, gray = (ColoredMNIST("hard_test", root="embedded", limit=50, grayscale=g) for g in (False, True))
    gray_images, labels, _ = gray.tensors()
    colored_images, colored_labels, _ = colored.tensors()
    assert torch.equal(labels, colored_labels)
    assert torch.equal(gray_images[:, 0], gray_images[:, 1]) and torch.equal(gray_images[:, 1], gray_images[:, 2])
    digits = gray.digits().float() / 255
    stroke = gray_images[:, 0][digits == 1]
    assert len(stroke) and torch.equal(stroke, torch.ones_like(stroke))  # full-intensity stroke pixels are white
    assert torch.equal(gray_images[:, 0][digits == 0], colored_images[:, 0][digits == 0])  # the same background
    assert MODEL_SPECS["grayscale"].data_options() == {"bias": MODEL_SPECS["erm"].bias, "grayscale": True}


def test_grl_without_augmentation_asks_its_color_head_for_the_images_own_colors():
    from shortcutlab.models import GRLNet
    from shortcutlab.train import GradientReversal

    seen = {}

    class Recording(GRLNet):
        def forward(self, x):
            seen["images"] = x
            return super().forward(x)

    torch.manual_seed(0)
    model = Recording()
    images = torch.rand(6, 3, 28, 28)
    labels, colors = torch.arange(6), torch.tensor([9, 8, 7, 6, 5, 4])
    generator = torch.Generator().manual_seed(0)
    loss, _ = GradientReversal(color_weight=0.5, recolor=False)(model, images, labels, colors, generator)
    digit_logits, color_logits = model(images)
    expected = (torch.nn.functional.cross_entropy(digit_logits, labels)
                + 0.5 * torch.nn.functional.cross_entropy(color_logits, colors))
    assert torch.equal(seen["images"], images) and torch.allclose(loss, expected)
    GradientReversal(color_weight=0.5)(model, images, labels, colors, generator)
    assert not torch.equal(seen["images"], images)  # the default recolors before the model sees the images


def test_each_rate_has_its_own_checkpoint_and_the_studys_rate_shares_the_studys():
    assert checkpoint_name("grl", spec_for("grl", 54_000)) == "grl.pt"
    assert checkpoint_name("grl", spec_for("grl", 54_000, 0.95)) == "grl.pt"
    assert checkpoint_name("grl", spec_for("grl", 54_000, 1.0)) == "grl@rate1.pt"
    assert spec_for("grl", 54_000, 0.99).fingerprint() != spec_for("grl", 54_000).fingerprint()
    assert checkpoint_name("unbiased", spec_for("unbiased", 54_000)) == "unbiased.pt"


@pytest.fixture
def one_epoch(monkeypatch):
    """Every model after the cheater trains one epoch on 500 images: the sweep's plumbing, not its science."""
    from shortcutlab.study import cache

    monkeypatch.setattr(cache, "SMALL_DATA_SETTINGS", {name: {"epochs": 1, "lr_milestones": (), "train_limit": 500}
                                                       for name in cache.SMALL_DATA_SETTINGS})


def test_a_sweep_of_two_rates_and_two_seeds_writes_its_tables_and_figures_and_an_extension_trains_only_new_rates(
        tmp_path, one_epoch, capsys):
    from shortcutlab.cli import main
    from shortcutlab.study import StudyConfig
    from shortcutlab.study.estimate import estimate

    out = tmp_path / "study"
    assert main(["reproduce", "--quick", "--tasks", "0", "--seeds", "2", "--dominant-rates", "0.95,1", "--out",
                 str(out), "--device", "cpu"]) == 0
    assert "expected time: about" in capsys.readouterr().out
    for seed in (42, 43):
        folder = out / "seeds" / f"seed-{seed}"
        results = json.loads((folder / "results.json").read_text())
        sweep = results["sweep"]
        assert sweep["rates"] == [0.95, 1.0] and list(sweep["models"]) == list(SWEEP_MODELS)
        assert all(len(e["hard_test_accuracy"]) == 2 for e in sweep["models"].values())
        assert set(sweep["references"]) == {"unbiased", "grayscale"}
        assert (folder / "figures" / "sweep_hard_test.png").stat().st_size > 0
        assert "## Correlation sweep" in (folder / "report.md").read_text()
        assert {p.name for p in (folder / "models").glob("*@rate1.pt")} == {f"{n}@rate1.pt" for n in SWEEP_MODELS}
    across = json.loads((out / "results.json").read_text())["across_seeds"]
    assert across["intervals"]["sweep.models.erm.hard_test_accuracy.1"]["n"] == 2
    assert "sweep.rates.0" not in across["values"]  # the rates are settings, never averaged
    page = (out / "report.md").read_text()
    assert "## Correlation sweep (hard test)" in page and "| ERM, whole split |" in page
    assert (out / "figures" / "seeds_sweep_hard_test.png").stat().st_size > 0
    assert "Unbiased colors vs Grayscale (shape only)" in page

    extended = StudyConfig(data="embedded", out=out, tasks=(0,), quick=True, dominant_rates=(0.95, 0.99, 1.0))
    planned = estimate(extended, seeds=2)
    assert sorted(planned.to_train) == sorted((n, 0.99) for n in SWEEP_MODELS for _ in (42, 43))
    assert len(planned.cached) == 2 * (2 * len(SWEEP_MODELS) + 2)


def test_the_estimate_plans_each_model_once_and_grows_with_every_opt_in_part(tmp_path):
    from shortcutlab.study import StudyConfig
    from shortcutlab.study.context import Study
    from shortcutlab.study.estimate import estimate, planned_models

    base = StudyConfig(data="embedded", out=tmp_path, tasks=(0, 1, 2, 3, 4, 5, 6), quick=True, device="cpu")
    planned = planned_models(Study(base))
    assert planned == [(n, None) for n in ("cheater", "consistency", "grl", "augmentation", "unbiased", "grayscale")]
    sweep = replace(base, dominant_rates=(0.95, 1.0))
    # the sweep's models at 0.95 that the study lacks, then each at rate 1; the references are the study's already
    assert planned_models(Study(sweep))[len(planned):] == [("erm", None), ("grl_no_augmentation", None)] + [
        (name, 1.0) for name in SWEEP_MODELS]
    seconds = [estimate(c).seconds for c in (base, replace(base, adversarial=True), replace(base, full_curves=True),
                                             sweep)]
    assert all(more > seconds[0] for more in seconds[1:])
    assert estimate(base, seeds=3).seconds == pytest.approx(3 * seconds[0])
    assert estimate(replace(base, tasks=(0,))).to_train == ()
