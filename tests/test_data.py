"""Does shortcutlab.data find MNIST, build the splits the report describes, and recolor strokes faithfully?"""
from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import shortcutlab.data as data
from shortcutlab.data import (COLOR_NAMES, EMBEDDED, PALETTE, ColoredMNIST, assign_colors, color_given_digit,
                              colorize, dominant_color_rate, load_mnist, recolor, recolor_rgb, smooth_texture,
                              stroke_mask, texture_from_noise)
from shortcutlab.errors import DataError, ShortcutlabError
from shortcutlab.tolerance import float_tolerance, tolerance_for

from conftest import make_fake_mnist, write_idx

FULL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
# Roundings in one rendered pixel (shortcutlab.tolerance): the texture's two 7-term interpolations and its affine
# map (2 * 7 + 2), then colorize's 4; recoloring adds about as many (chroma, projection, repaint).
TEXTURE_OPS, COLORIZE_OPS = 2 * 7 + 2, 4
RENDER_OPS = TEXTURE_OPS + COLORIZE_OPS
RECOLOR_OPS = 2 * RENDER_OPS


@pytest.fixture(autouse=True)
def _fresh_sources():
    data._load_cached.cache_clear()
    yield
    data._load_cached.cache_clear()


# ----------------------------------------------------------------------------- palette


def test_palette_has_one_rgb_color_per_digit_in_unit_range():
    assert PALETTE.shape == (10, 3) and PALETTE.dtype == torch.float32
    assert len(COLOR_NAMES) == 10 and len(set(COLOR_NAMES)) == 10
    assert PALETTE.min() >= 0 and PALETTE.max() <= 1
    assert torch.cdist(PALETTE, PALETTE).add(torch.eye(10)).min() > 0.3, "palette colors must be distinguishable"


# ----------------------------------------------------------------------------- MNIST sources


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_reads_a_torchvision_layout_folder(tmp_path, gz):
    root = make_fake_mnist(tmp_path, n_train=50, n_test=20, gz=gz)
    digits, labels = load_mnist(train=True, root=root)
    assert digits.shape == (50, 28, 28) and digits.dtype == torch.uint8
    assert labels.shape == (50,) and labels.dtype == torch.int64
    assert load_mnist(train=False, root=root)[0].shape == (20, 28, 28)
    assert data.mnist(True, root).source == "folder"


def test_load_mnist_works_from_a_read_only_folder(tmp_path):
    root = make_fake_mnist(tmp_path, n_train=30, n_test=10)
    for path in sorted(root.rglob("*"), reverse=True):
        path.chmod(stat.S_IREAD | stat.S_IEXEC | (stat.S_IRGRP if path.is_dir() else 0))
    try:
        assert len(load_mnist(True, root)[1]) == 30
    finally:
        for path in root.rglob("*"):
            path.chmod(0o755)


def test_load_mnist_uses_the_environment_variable(tmp_path, monkeypatch):
    root = make_fake_mnist(tmp_path, n_train=40, n_test=10)
    monkeypatch.setenv("SHORTCUTLAB_DATA", str(root))
    assert len(load_mnist(True)[1]) == 40


def test_missing_folder_names_the_folder_and_the_expected_files(tmp_path):
    with pytest.raises(DataError) as info:
        load_mnist(True, tmp_path / "nowhere")
    assert "nowhere" in str(info.value) and "train-images-idx3-ubyte" in str(info.value)
    assert isinstance(info.value, ShortcutlabError)


def test_empty_folder_names_the_expected_layout(tmp_path):
    with pytest.raises(DataError, match=r"MNIST/raw.*t10k-labels-idx1-ubyte"):
        load_mnist(True, tmp_path)


def test_missing_label_file_is_named(tmp_path):
    root = make_fake_mnist(tmp_path)
    (root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_mnist(True, root)


@pytest.mark.parametrize("damage", ["truncate", "bad_magic", "bad_gzip"])
def test_corrupted_files_raise_a_data_error_naming_the_file(tmp_path, damage):
    root = make_fake_mnist(tmp_path)
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    if damage == "bad_gzip":
        path.write_bytes(b"not gzip at all")
    else:
        import gzip

        raw = gzip.decompress(path.read_bytes())
        raw = raw[:-100] if damage == "truncate" else b"\x00\x00\x09\x99" + raw[4:]
        path.write_bytes(gzip.compress(raw))
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_mnist(True, root)


def test_labels_outside_0_to_9_are_rejected(tmp_path):
    root = make_fake_mnist(tmp_path, n_train=20, n_test=10)
    write_idx(root / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.full(20, 12), gz=True)
    with pytest.raises(DataError, match="0-9"):
        load_mnist(True, root)


def test_embedded_subset_is_real_mnist_split_4000_1000_stratified(capsys):
    digits, labels = load_mnist(True, EMBEDDED)
    test_digits, test_labels = load_mnist(False, EMBEDDED)
    assert digits.shape == (4000, 28, 28) and test_digits.shape == (1000, 28, 28)
    assert torch.bincount(labels).tolist() == [400] * 10
    assert torch.bincount(test_labels).tolist() == [100] * 10
    assert digits.max() == 255 and 0.05 < digits.float().mean() / 255 < 0.25  # real strokes, not noise
    # the train and test pools are disjoint
    train_rows = {bytes(d.numpy()) for d in digits}
    assert not any(bytes(d.numpy()) in train_rows for d in test_digits)


def test_embedded_subset_is_announced_once_with_its_size(monkeypatch, capsys):
    monkeypatch.setattr(data, "_announced_embedded", False)
    load_mnist(True, EMBEDDED)
    load_mnist(False, EMBEDDED)
    err = capsys.readouterr().err
    assert err.count("5,000 real MNIST digits") == 1 and "3,600/400/1,000" in err


def test_offline_without_data_falls_back_to_the_embedded_digits_fast(monkeypatch):
    monkeypatch.delenv("SHORTCUTLAB_OFFLINE", raising=False)
    monkeypatch.setattr(data, "DOWNLOAD_PROBE_SECONDS", 0.3)
    never, answered = threading.Event(), threading.Event()

    def hanging_connection(*args, **kwargs):  # a resolver / firewall that never answers (until the test ends)
        never.wait(60)
        answered.set()
        raise OSError("unreachable")

    monkeypatch.setattr("socket.create_connection", hanging_connection)
    source = data.mnist(True)
    # the fallback came while the connection attempt still hangs: it never waited for the network
    assert not answered.is_set()
    assert source.source == EMBEDDED and len(source.labels) == 4000
    never.set()


def test_download_is_used_when_the_network_answers(monkeypatch, tmp_path):
    monkeypatch.delenv("SHORTCUTLAB_OFFLINE", raising=False)
    monkeypatch.setenv("SHORTCUTLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_network_answers", lambda hosts, timeout: True)

    class FakeTorchvisionMNIST:
        def __init__(self, root, train, download):
            assert download
            make_fake_mnist(Path(root).parent / Path(root).name, n_train=70, n_test=10)

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeTorchvisionMNIST)
    source = data.mnist(True)
    assert source.source == "download" and len(source.labels) == 70


def test_unwritable_cache_falls_back_to_a_temporary_folder(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("SHORTCUTLAB_CACHE", str(blocker / "sub"))
    assert os.access(data.cache_dir(), os.W_OK)


# ----------------------------------------------------------------------------- coloring


def test_assign_colors_extremes_and_rate():
    labels = torch.arange(10).repeat(2000)
    generator = torch.Generator().manual_seed(1)
    assert torch.equal(assign_colors(labels, 1.0, generator), labels)
    hard = assign_colors(labels, 0.0, generator)
    assert not (hard == labels).any()
    others = color_given_digit(labels, hard)
    assert torch.allclose(others[~torch.eye(10, dtype=torch.bool)], torch.full((90,), 1 / 9), atol=0.03)
    assert abs(dominant_color_rate(labels, assign_colors(labels, 0.95, generator)) - 0.95) < 0.01


@pytest.mark.parametrize("bias", [-0.1, 1.5, float("nan")])
def test_bias_outside_unit_interval_is_a_value_error(bias):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        assign_colors(torch.arange(10), bias)


def test_smooth_texture_is_smooth_noise_in_range_and_seeded():
    a = smooth_texture(16, torch.Generator().manual_seed(3))
    b = smooth_texture(16, torch.Generator().manual_seed(3))
    assert a.shape == (16, 1, 28, 28) and torch.equal(a, b)
    assert a.min() >= 0.1 and a.max() <= 0.3
    assert a.std(dim=(1, 2, 3)).min() > 0.005, "background must be textured, not flat"
    neighbour_step = (a[..., 1:] - a[..., :-1]).abs().mean()
    white_noise = 0.1 + 0.2 * torch.rand(16, 1, 28, 28)
    assert neighbour_step < 0.25 * (white_noise[..., 1:] - white_noise[..., :-1]).abs().mean()


def test_texture_equals_bilinear_interpolation():
    noise = torch.rand(5, 1, 7, 7)
    expected = 0.1 + 0.2 * torch.nn.functional.interpolate(noise, size=(28, 28), mode="bilinear",
                                                           align_corners=False)
    torch.testing.assert_close(texture_from_noise(noise), expected, **tolerance_for(expected, ops=TEXTURE_OPS))


def test_colorize_follows_the_formula():
    digits = torch.rand(4, 28, 28)
    color_ids = torch.tensor([0, 3, 7, 9])
    background = smooth_texture(4)
    expected = (digits[:, None] * PALETTE[color_ids][:, :, None, None] + background * (1 - digits[:, None])).clamp(0, 1)
    got = colorize(digits, color_ids, background)
    torch.testing.assert_close(got, expected, **tolerance_for(expected, ops=COLORIZE_OPS))


def test_color_given_digit_rows_are_distributions_and_empty_rows_zero():
    labels = torch.tensor([0, 0, 0, 1])
    colors = torch.tensor([0, 0, 5, 2])
    matrix = color_given_digit(labels, colors)
    assert matrix.shape == (10, 10)
    assert matrix[0, 0] == pytest.approx(2 / 3) and matrix[0, 5] == pytest.approx(1 / 3)
    assert matrix[1, 2] == 1 and matrix[2:].abs().sum() == 0
    assert dominant_color_rate(labels, colors) == pytest.approx(0.5)
    assert dominant_color_rate(torch.tensor([]), torch.tensor([])) == 0.0


# ----------------------------------------------------------------------------- ColoredMNIST


def test_split_sizes_follow_a_90_10_train_val_split(fake_mnist):
    sizes = {s: len(ColoredMNIST(s, root=fake_mnist)) for s in ("train", "val", "hard_test")}
    assert sizes == {"train": 270, "val": 30, "hard_test": 100}
    train, val = ColoredMNIST("train", root=fake_mnist), ColoredMNIST("val", root=fake_mnist)
    assert set(train.index.tolist()).isdisjoint(val.index.tolist())


def test_items_are_float_images_in_range_with_int_labels(fake_mnist):
    image, label, color_id = ColoredMNIST("train", root=fake_mnist)[0]
    assert image.shape == (3, 28, 28) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert isinstance(label, int) and isinstance(color_id, int)
    ds = ColoredMNIST("val", root=fake_mnist)
    assert ds.labels.dtype == torch.int64 and ds.color_ids.dtype == torch.int64


def test_vectorised_rendering_equals_per_item_rendering(fake_mnist):
    ds = ColoredMNIST("train", root=fake_mnist)
    images, labels, color_ids = ds.tensors()
    for i in range(0, len(ds), 17):
        image, label, color_id = ds[i]
        torch.testing.assert_close(image, images[i], **tolerance_for(images[i], ops=RENDER_OPS))
        assert (label, color_id) == (int(labels[i]), int(color_ids[i]))


def test_rendering_is_deterministic_for_a_seed_and_changes_with_it(fake_mnist):
    a = ColoredMNIST("train", root=fake_mnist, seed=7).tensors()
    b = ColoredMNIST("train", root=fake_mnist, seed=7).tensors()
    c = ColoredMNIST("train", root=fake_mnist, seed=8).tensors()
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_limit_keeps_the_same_first_samples(fake_mnist):
    full = ColoredMNIST("train", root=fake_mnist)
    small = ColoredMNIST("train", root=fake_mnist, limit=25)
    assert len(small) == 25
    expected = full.tensors()[0][:25]  # rendered in a larger batch: equal up to rounding
    torch.testing.assert_close(small.tensors()[0], expected, **tolerance_for(expected, ops=RENDER_OPS))
    assert torch.equal(small.color_ids, full.color_ids[:25])


def test_background_is_textured_and_strokes_carry_the_color(fake_mnist):
    ds = ColoredMNIST("train", root=fake_mnist)
    images, _, color_ids = ds.tensors()
    background = images[:, :, :2, :]  # the fake digits never reach the top rows
    assert background.min() >= 0.1 - 1e-6 and background.max() <= 0.3 + 1e-6
    assert torch.equal(background[:, 0], background[:, 1]), "background is gray"
    assert background.std(dim=(1, 2, 3)).min() > 0.003
    full_stroke = ds.digits() == 255
    i = int(torch.nonzero(full_stroke.flatten(1).any(1))[0])
    y, x = torch.nonzero(full_stroke[i])[0].tolist()
    torch.testing.assert_close(images[i, :, y, x], PALETTE[color_ids[i]])


def test_hard_test_never_uses_the_dominant_color(fake_mnist):
    ds = ColoredMNIST("hard_test", root=fake_mnist, bias=0.95)
    assert ds.bias == 0.0 and dominant_color_rate(ds.labels, ds.color_ids) == 0.0


def test_embedded_splits_have_the_reports_color_statistics():
    train = ColoredMNIST("train", root=EMBEDDED)
    hard = ColoredMNIST("hard_test", root=EMBEDDED)
    assert (len(train), len(ColoredMNIST("val", root=EMBEDDED)), len(hard)) == (3600, 400, 1000)
    assert abs(dominant_color_rate(train.labels, train.color_ids) - 0.95) < 0.015
    assert dominant_color_rate(hard.labels, hard.color_ids) == 0.0


@pytest.mark.skipif(not FULL_MNIST.exists(), reason="full MNIST not present at ../shared/data/mnist")
def test_full_mnist_splits_match_the_acceptance_statistics():
    train, val, hard = (ColoredMNIST(s, root=FULL_MNIST) for s in ("train", "val", "hard_test"))
    assert (len(train), len(val), len(hard)) == (54000, 6000, 10000)
    for ds in (train, val):
        assert abs(dominant_color_rate(ds.labels, ds.color_ids) - 0.95) <= 0.006
    assert dominant_color_rate(hard.labels, hard.color_ids) == 0.0
    counts = torch.bincount(hard.color_ids, minlength=10).float()
    expected = torch.zeros(10)
    for digit, n in enumerate(torch.bincount(hard.labels, minlength=10).tolist()):
        expected += n / 9 * (torch.arange(10) != digit)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.9, f"hard-test colors not uniform over the nine others (chi2={chi2:.1f}, 9 dof, p<0.001)"


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "test"}, "train, val, hard_test"),
    ({"split": "train", "bias": 1.2}, r"\[0, 1\]"),
    ({"split": "train", "limit": 0}, "positive integer"),
    ({"split": "train", "limit": 2.5}, "positive integer"),
])
def test_bad_arguments_say_what_is_allowed(fake_mnist, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ColoredMNIST(root=fake_mnist, **kwargs)


# ----------------------------------------------------------------------------- recolor


def test_recolor_matches_true_rerender():
    hard = ColoredMNIST("hard_test", root=EMBEDDED)
    images = hard.tensors()[0]
    new = (hard.color_ids + torch.randint(1, 10, hard.color_ids.shape)) % 10
    truth = colorize(hard.digits().float() / 255, new, texture_from_noise(hard.noise()))
    error = (recolor(images, new) - truth).abs()
    gray = hard.color_ids == 9
    rounding = float_tolerance(torch.float32, 1.0, ops=RECOLOR_OPS)[1]
    assert error[~gray].max() < rounding, "hued strokes are recolored exactly (up to rounding)"
    assert error[gray].mean() < 0.03 and error[gray].flatten(1).mean(1).max() < 0.06


def test_recolor_to_the_same_colors_is_identity_and_keeps_background():
    ds = ColoredMNIST("val", root=EMBEDDED)
    images, _, color_ids = ds.tensors()
    torch.testing.assert_close(recolor(images, color_ids), images, atol=2e-2, rtol=0)
    hued = color_ids != 9
    torch.testing.assert_close(recolor(images[hued], color_ids[hued]), images[hued],
                               **tolerance_for(images[hued], ops=RECOLOR_OPS))


def test_stroke_mask_recovers_the_digit_intensity():
    ds = ColoredMNIST("val", root=EMBEDDED, limit=50)
    images = ds.tensors()[0]
    hued = ds.color_ids != 9
    truth = ds.digits().float()[:, None] / 255
    torch.testing.assert_close(stroke_mask(images)[hued], truth[hued], **tolerance_for(truth[hued], ops=RECOLOR_OPS))


def test_recolor_rgb_paints_any_color():
    ds = ColoredMNIST("val", root=EMBEDDED, limit=8)
    images = ds.tensors()[0]
    teal = torch.tensor([[0.1, 0.6, 0.55]]).repeat(8, 1)
    out = recolor_rgb(images, teal)
    full = ds.digits() == 255
    expected = teal[0].expand(int(full.sum()), 3)
    torch.testing.assert_close(out.permute(0, 2, 3, 1)[full], expected, **tolerance_for(expected, ops=RECOLOR_OPS))


@pytest.mark.parametrize("images, ids, match", [
    (torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), r"\(N, 3, H, W\)"),
    (torch.rand(4, 3, 28, 28), torch.zeros(3, dtype=torch.long), "one color id per image"),
    (torch.rand(2, 3, 28, 28), torch.tensor([0, 10]), "0..9"),
])
def test_recolor_rejects_bad_arguments(images, ids, match):
    with pytest.raises(ValueError, match=match):
        recolor(images, ids)
