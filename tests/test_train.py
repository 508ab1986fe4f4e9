"""Does the one training loop train deterministically, evaluate honestly and checkpoint safely?"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from shortcutlab.data import EMBEDDED, ColoredMNIST
from shortcutlab.models import GRLNet, SimpleCNN, class_logits
from shortcutlab.train import (AdversarialTraining, Consistency, GradientReversal, RecolorAugmentation, History, as_tensors, confusion_matrix, erm, evaluate, fit,
                               load_checkpoint, predict_logits, save_checkpoint)
from shortcutlab.tolerance import tolerance_for


def color_coded_batch(n: int = 64, seed: int = 0):
    """A toy set whose label is fully readable from the image's mean color (class = brightest channel)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=generator)
    images = torch.rand(n, 3, 28, 28, generator=generator) * 0.2
    images[torch.arange(n), labels] += 0.7
    return images, labels, labels.clone()


def test_simple_cnn_maps_images_to_ten_logits_and_exposes_its_layers():
    model = SimpleCNN()
    x = torch.rand(5, 3, 28, 28)
    assert model(x).shape == (5, 10)
    assert isinstance(model.target_layer[0], nn.Conv2d)
    assert model.features(x).shape == (5, 128)
    assert model.target_layer(model.block2(model.block1(x))).shape[-2:] == (7, 7)


def test_confusion_counts_rows_as_true_labels():
    predictions = torch.tensor([0, 1, 1, 2, 2, 2])
    labels = torch.tensor([0, 0, 1, 2, 2, 1])
    matrix = confusion_matrix(predictions, labels, num_classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]
    assert matrix.dtype == torch.int64


def test_evaluate_reports_accuracy_loss_confusion_and_restores_train_mode():
    model = SimpleCNN()
    images, labels, colors = color_coded_batch(40)
    model.train()
    result = evaluate(model, (images, labels, colors))
    assert model.training, "evaluate must restore the model's mode"
    logits = predict_logits(model, images)
    assert result.accuracy == pytest.approx(float((logits.argmax(1) == labels).float().mean()))
    assert result.loss == pytest.approx(float(nn.functional.cross_entropy(logits, labels)), rel=1e-5)
    assert int(result.confusion.sum()) == 40 and result.confusion.shape == (10, 10)


def test_predict_logits_uses_eval_mode_without_gradients():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.9), nn.Linear(3 * 28 * 28, 10))
    x = torch.rand(8, 3, 28, 28)
    a, b = predict_logits(model, x, batch_size=3), predict_logits(model, x, batch_size=8)
    # dropout off, batching irrelevant (up to rounding: other batch sizes may run other matmul kernels)
    torch.testing.assert_close(a, b, **tolerance_for(b, ops=3 * 28 * 28))
    assert not a.requires_grad


def test_fit_learns_a_color_coded_task_and_logs_history_per_epoch():
    data = color_coded_batch(128)
    model = SimpleCNN(width=4, hidden=16)
    history = fit(model, data, epochs=8, lr=1e-2, batch_size=16, eval_sets={"val": color_coded_batch(64, 1)},
                  quiet=True)
    assert set(history.metrics) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 8 for v in history.metrics.values())
    assert history.metrics["train_loss"][-1] < history.metrics["train_loss"][0]
    assert history.metrics["val_accuracy"][-1] > 0.9
    assert history.seconds > 0


def test_fit_is_deterministic_for_a_seed():
    data = color_coded_batch(64)
    weights = []
    for _ in range(2):
        torch.manual_seed(3)
        model = SimpleCNN(width=4, hidden=16)
        fit(model, data, epochs=2, batch_size=16, seed=11, quiet=True)
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_fit_lr_milestones_scale_the_learning_rate_from_that_epoch_on():
    def train(epochs: int, milestones: tuple[int, ...]) -> torch.Tensor:
        torch.manual_seed(3)
        model = SimpleCNN(width=4, hidden=16)
        fit(model, color_coded_batch(64), epochs=epochs, batch_size=16, seed=11, quiet=True,
            lr_milestones=milestones, lr_gamma=0.0)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    one_epoch = train(1, ())
    frozen_after_one = train(3, (1,))  # lr 0 from the second epoch on: nothing moves any more
    assert torch.equal(one_epoch, frozen_after_one)
    assert not torch.equal(one_epoch, train(3, (2,)))


def test_fit_one_cycle_sets_the_learning_rate_every_batch_up_to_lr_and_down_to_almost_zero(monkeypatch):
    seen = []
    step = torch.optim.Adam.step

    def recording(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    torch.manual_seed(3)
    fit(SimpleCNN(width=4, hidden=16), color_coded_batch(64), epochs=2, batch_size=8, lr=0.01, seed=11, quiet=True,
        one_cycle=True)
    assert len(seen) == 16 and 0.0099 < max(seen) <= 0.01  # the peak falls between two of the 16 steps
    peak = seen.index(max(seen))
    assert seen[0] < 0.01 / 10 and 0 < peak < 8 and seen[-1] < 0.01 / 1000
    assert all(a <= b for a, b in zip(seen[:peak], seen[1:peak + 1]))
    assert all(a >= b for a, b in zip(seen[peak:], seen[peak + 1:]))
    with pytest.raises(ValueError, match="no lr_milestones"):
        fit(SimpleCNN(width=4, hidden=16), color_coded_batch(8), epochs=2, one_cycle=True, lr_milestones=(1,))


def test_fit_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="batch_size > 0"):
        fit(SimpleCNN(), color_coded_batch(8), batch_size=0, quiet=True)


def test_as_tensors_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"labels \(N,\)"):
        as_tensors((torch.rand(4, 3, 28, 28), torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long)))


def test_checkpoint_round_trip_restores_weights_history_and_meta(tmp_path):
    model = SimpleCNN(width=4, hidden=16)
    history = History({"train_loss": [1.0, 0.5]}, seconds=2.0)
    save_checkpoint(tmp_path / "m.pt", model, history, {"seed": 1})
    other = SimpleCNN(width=4, hidden=16)
    loaded, meta = load_checkpoint(tmp_path / "m.pt", other)
    assert meta == {"seed": 1} and loaded.metrics == history.metrics and loaded.seconds == 2.0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    assert not list(tmp_path.glob("*.tmp"))


def test_fit_writes_a_checkpoint_when_asked(tmp_path):
    fit(SimpleCNN(width=4, hidden=16), color_coded_batch(16), epochs=1, checkpoint=tmp_path / "c.pt", quiet=True)
    assert (tmp_path / "c.pt").exists()


def test_erm_recipe_is_cross_entropy():
    model = SimpleCNN(width=4, hidden=16)
    images, labels, colors = color_coded_batch(8)
    loss, logits = erm(model, images, labels, colors, torch.Generator())
    torch.testing.assert_close(loss, nn.functional.cross_entropy(class_logits(model(images)), labels))


def test_debiasing_recipes_plug_into_fit():
    ds = ColoredMNIST("train", root=EMBEDDED, limit=64)
    for model, recipe in ((SimpleCNN(width=4, hidden=16), Consistency(2.0)),
                          (GRLNet(width=4, hidden=16), GradientReversal(0.5))):
        history = fit(model, ds, recipe=recipe, epochs=1, batch_size=32, quiet=True)
        assert torch.isfinite(torch.tensor(history.metrics["train_loss"])).all()


def test_recolor_augmentation_is_cross_entropy_on_images_recolored_with_the_generators_colors():
    from shortcutlab.data import recolor
    from shortcutlab.train import random_colors

    model = SimpleCNN(width=4, hidden=16)
    images, labels, colors = (t[:16] for t in ColoredMNIST("train", root=EMBEDDED, limit=16).tensors())
    loss, logits = RecolorAugmentation()(model, images, labels, colors, torch.Generator().manual_seed(5))
    recolored = recolor(images, random_colors(16, torch.Generator().manual_seed(5)))
    torch.testing.assert_close(logits, class_logits(model(recolored)))
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits, labels))


def test_adversarial_training_loss_is_cross_entropy_on_attacked_recolored_images():
    from shortcutlab.attacks import untargeted_pgd
    from shortcutlab.data import recolor
    from shortcutlab.train import random_colors

    model = SimpleCNN(width=4, hidden=16).train()
    images, labels, colors = (t[:16] for t in ColoredMNIST("train", root=EMBEDDED, limit=16).tensors())
    recipe = AdversarialTraining(eps=0.1, alpha=0.05, steps=3, clean_weight=0.0)
    loss, logits = recipe(model, images, labels, colors, torch.Generator().manual_seed(5))
    assert model.training  # the attack ran in eval mode and gave the training mode back
    generator = torch.Generator().manual_seed(5)
    recolored = recolor(images, random_colors(16, generator))
    attacked = untargeted_pgd(model, recolored, labels, eps=0.1, alpha=0.05, steps=3, generator=generator)
    torch.testing.assert_close(logits, class_logits(model(attacked)))
    with torch.no_grad():
        clean = nn.functional.cross_entropy(class_logits(model(recolored)), labels)
    assert float(loss.detach()) > float(clean)  # the attack found a worse point of the eps-ball


def test_adversarial_training_mixes_the_clean_and_the_attacked_cross_entropy_at_clean_weight():
    from shortcutlab.attacks import untargeted_pgd
    from shortcutlab.data import recolor
    from shortcutlab.train import random_colors

    model = SimpleCNN(width=4, hidden=16).eval()  # eval: BatchNorm treats the two halves as separate batches would
    images, labels, colors = (t[:16] for t in ColoredMNIST("train", root=EMBEDDED, limit=16).tensors())
    loss, logits = AdversarialTraining(eps=0.1, alpha=0.05, steps=2, clean_weight=0.25)(
        model, images, labels, colors, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    recolored = recolor(images, random_colors(16, generator))
    attacked = untargeted_pgd(model, recolored, labels, eps=0.1, alpha=0.05, steps=2, generator=generator)
    clean_logits, attacked_logits = class_logits(model(recolored)), class_logits(model(attacked))
    torch.testing.assert_close(logits, attacked_logits)
    torch.testing.assert_close(loss, 0.25 * nn.functional.cross_entropy(clean_logits, labels)
                               + 0.75 * nn.functional.cross_entropy(attacked_logits, labels))


def test_control_recipes_plug_into_fit():
    ds = ColoredMNIST("train", root=EMBEDDED, limit=64)
    for recipe in (RecolorAugmentation(), AdversarialTraining(eps=0.1, alpha=0.05, steps=2)):
        history = fit(SimpleCNN(width=4, hidden=16), ds, recipe=recipe, epochs=1, batch_size=32, quiet=True)
        assert torch.isfinite(torch.tensor(history.metrics["train_loss"])).all()
