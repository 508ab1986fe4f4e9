"""Does a network shipped as an exported program answer as the network did? Forward, features, Grad-CAM at its
target layer and input gradients; and does ``shortcutlab.pretrained`` take a student edition's shipped model?"""
from __future__ import annotations

import pytest
import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.exported import ExportedModel, export_model, load_exported
from shortcutlab.interpret import grad_cam
from shortcutlab.models import GRLNet, SimpleCNN
from shortcutlab import exported
from shortcutlab.study import cache
from shortcutlab.tolerance import tolerance_for

OPS = 27 + 144 + 288 + 64 * 7 * 7 + 128  # roundings in one SimpleCNN logit (see tests/test_edition.py)


@pytest.fixture(scope="module")
def network_and_copy(tmp_path_factory):
    torch.manual_seed(0)
    network = SimpleCNN().eval()
    return network, load_exported(export_model(network, tmp_path_factory.mktemp("m") / "cnn.pt2"))


def test_an_exported_network_gives_the_same_logits_and_features_for_any_batch_size(network_and_copy):
    network, copy = network_and_copy
    for n in (1, 7):
        x = torch.rand(n, 3, 28, 28, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            torch.testing.assert_close(copy(x), network(x), **tolerance_for(network(x), ops=OPS))
            torch.testing.assert_close(copy.features(x), network.features(x), **tolerance_for(network.features(x),
                                                                                               ops=OPS))
    assert isinstance(copy, ExportedModel) and not copy.training


def test_grad_cam_and_input_gradients_work_on_an_exported_network(network_and_copy):
    network, copy = network_and_copy
    x = torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 3, 5, 9])
    expected = grad_cam(network, network.target_layer, x, targets)
    torch.testing.assert_close(grad_cam(copy, copy.target_layer, x, targets), expected,
                               **tolerance_for(expected, ops=OPS))
    inputs = x.clone().requires_grad_(True)
    copy(inputs)[:, 0].sum().backward()
    assert inputs.grad is not None and bool(inputs.grad.abs().sum() > 0)


def test_a_two_headed_network_keeps_both_heads(tmp_path):
    torch.manual_seed(0)
    network = GRLNet().eval()
    copy = load_exported(export_model(network, tmp_path / "grl.pt2"))
    x = torch.rand(3, 3, 28, 28)
    with torch.no_grad():
        for got, want in zip(copy(x), network(x), strict=True):
            torch.testing.assert_close(got, want, **tolerance_for(want, ops=OPS))
    assert copy.target_layer is copy.net.get_submodule("backbone.block3")


def test_an_unreadable_program_is_a_clear_error(tmp_path):
    broken = tmp_path / "cheater.pt2"
    broken.write_bytes(b"not a program")
    with pytest.raises(ShortcutlabError, match="reinstall the course's wheel"):
        load_exported(broken)


def test_pretrained_takes_a_shipped_model_only_for_the_embedded_digits_and_the_default_cache(tmp_path, monkeypatch):
    torch.manual_seed(0)
    monkeypatch.setattr(exported, "SHIPPED_MODELS", tmp_path)
    export_model(SimpleCNN(), exported.shipped_model_path("cheater"))
    assert isinstance(cache.pretrained("cheater", device="cpu", quiet=True), ExportedModel)
    assert isinstance(cache.pretrained("cheater", data="embedded", device="cpu", quiet=True), ExportedModel)
    with pytest.raises(ShortcutlabError, match="no model"):
        cache.pretrained("no_such_model")
