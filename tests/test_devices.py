"""Does --device choose the right device, and do the study's data and models end up on it?"""
from __future__ import annotations

import pytest
import torch

from shortcutlab.devices import resolve_device
from shortcutlab.errors import ShortcutlabError
from shortcutlab.models import class_logits
from shortcutlab.tolerance import tolerance_for
from shortcutlab.study.context import Study, StudyConfig


def test_auto_is_the_cpu_without_a_gpu_and_cuda_with_one(monkeypatch):
    monkeypatch.delenv("SHORTCUTLAB_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_cpu_is_the_cpu_even_where_a_gpu_exists(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_asking_for_a_gpu_that_is_not_there_says_what_to_use_instead(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ShortcutlabError, match="--device cpu or auto"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ShortcutlabError, match="1 GPU"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("bad", ["tpu", "gpu0", "mps"])
def test_unknown_devices_are_refused_with_the_choices(bad):
    with pytest.raises(ShortcutlabError, match="auto, cpu, cuda"):
        resolve_device(bad)


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_the_study_renders_its_data_and_trains_its_models_on_the_chosen_device(device, fake_mnist, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    study = Study(StudyConfig(data=str(fake_mnist), out=tmp_path, quiet=True, device=device))
    assert study.device == torch.device("cpu")
    images, labels, color_ids = study.split("val").tensors()
    assert images.device == labels.device == color_ids.device == torch.device("cpu")
    model = study.model("cheater")
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}
    hard_images, hard_labels, _ = study.split("hard_test").tensors()
    with torch.no_grad():
        logits = class_logits(model(hard_images))
    correct = int((logits.argmax(dim=1) == hard_labels).sum())
    # The study's own measurement, on the chosen device, is the fraction this model gets right. Its batches may take
    # other kernels (another layout or batch size): only a digit whose two best logits are within float32 rounding
    # of each other (about 4,000 terms accumulated per logit, both sides rounding) may be counted differently.
    top_two = logits.topk(2, dim=1).values
    near_ties = int((top_two[:, 0] - top_two[:, 1] <= 2 * tolerance_for(logits, ops=4096)["atol"]).sum())
    measured = study.evaluate_model("cheater")["hard_test_accuracy"] * len(hard_labels)
    assert abs(measured - correct) <= near_ties + 1e-6 * len(hard_labels), (measured, correct, near_ties)


def test_a_study_asked_for_auto_on_a_gpu_machine_picks_cuda(monkeypatch, tmp_path):
    monkeypatch.delenv("SHORTCUTLAB_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert Study(StudyConfig(out=tmp_path, device="auto")).device == torch.device("cuda")


def test_the_environment_variable_forces_what_auto_means(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("SHORTCUTLAB_DEVICE", "cpu")
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    monkeypatch.setenv("SHORTCUTLAB_DEVICE", "tpu")
    with pytest.raises(ShortcutlabError, match="tpu"):
        resolve_device()
