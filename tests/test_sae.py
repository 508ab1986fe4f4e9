"""Tests of shortcutlab.sae: the sparse autoencoder, its training, analysis helpers and surgery."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from shortcutlab.models import SimpleCNN
from shortcutlab.sae import (
    SparseAutoencoder,
    ablate_latents,
    fraction_variance_unexplained,
    group_variance_explained,
    latent_label_correlation,
    latent_selectivity,
    resample_dead_latents,
    sae_loss,
    sae_metrics,
    select_color_latents,
    top_activating,
    train_sae,
)
from shortcutlab.tolerance import float_tolerance, tolerance_for


def sparse_dictionary_data(
    n: int = 4096, d_in: int = 32, k: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (n, d_in) = codes (n, k) @ directions (k, d_in): 1 or 2 unit directions per row, weights in [0.5, 1.5)."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(k, d_in, generator=g)
    directions = directions / directions.norm(dim=1, keepdim=True)
    rows = torch.arange(n)
    first = torch.randint(0, k, (n,), generator=g)
    second = (first + torch.randint(1, k, (n,), generator=g)) % k
    two = torch.randint(0, 2, (n,), generator=g).bool()
    weights = torch.rand(n, 2, generator=g) + 0.5
    codes = torch.zeros(n, k)
    codes[rows, first] = weights[:, 0]
    codes[rows[two], second[two]] = weights[two, 1]
    return codes @ directions, directions, codes


def hand_sae() -> SparseAutoencoder:
    """d_in=2, d_hidden=4 SAE with latents +e1, -e1, +e2, -e2: reconstructs any x exactly."""
    sae = SparseAutoencoder(2, 4)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]))
        sae.W_dec.copy_(sae.W_enc.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def half_dead_sae() -> SparseAutoencoder:
    """d_in=32, d_hidden=32 SAE whose first 16 latents never fire, so no gradient can revive them."""
    sae = SparseAutoencoder(32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.b_enc[:16] = -1e4
    return sae


@pytest.fixture(scope="module")
def sparse_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return sparse_dictionary_data()


def train_on(x: torch.Tensor, d_hidden: int) -> tuple[SparseAutoencoder, dict[str, list[float]]]:
    """The synthetic-data recipe: 512 steps of 64 rows."""
    return train_sae(x, d_hidden, l1=0.2, epochs=8, batch_size=64, lr=3e-3, resample_every=200, seed=0)


@pytest.fixture(scope="module")
def one_latent_per_direction(sparse_data) -> tuple[SparseAutoencoder, dict[str, list[float]]]:
    return train_on(sparse_data[0], 8)


@pytest.fixture(scope="module")
def overcomplete(sparse_data) -> tuple[SparseAutoencoder, dict[str, list[float]]]:
    return train_on(sparse_data[0], 32)


# ----------------------------------------------------------------------------- model


def test_encode_decode_and_forward_return_the_documented_shapes():
    sae = SparseAutoencoder(6, 24, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 6)
    f = sae.encode(x)
    assert f.shape == (5, 24)
    assert sae.decode(f).shape == (5, 6)
    x_hat, f2 = sae(x)
    assert x_hat.shape == (5, 6) and f2.shape == (5, 24)
    assert {name: tuple(p.shape) for name, p in sae.named_parameters()} == {
        "W_enc": (6, 24), "b_enc": (24,), "W_dec": (24, 6), "b_dec": (6,)
    }


def test_encode_and_decode_follow_the_formulas():
    g = torch.Generator().manual_seed(1)
    sae = SparseAutoencoder(4, 7, generator=g)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(9, 4, generator=g)
    f_expected = torch.clamp((x - sae.b_dec) @ sae.W_enc + sae.b_enc, min=0)
    # the formulas against the module's own operations (fused or not): equal up to the roundings of the 4 + 7 sums
    torch.testing.assert_close(sae.encode(x), f_expected, **tolerance_for(f_expected, ops=4 + 2))
    assert (sae.encode(x) == 0).any() and (sae.encode(x) > 0).any()
    f = torch.rand(9, 7, generator=g)
    expected = f @ sae.W_dec + sae.b_dec
    torch.testing.assert_close(sae.decode(f), expected, **tolerance_for(expected, ops=7 + 1))
    x_hat, f_out = sae(x)
    expected = f_expected @ sae.W_dec + sae.b_dec
    torch.testing.assert_close(x_hat, expected, **tolerance_for(expected, ops=4 + 2 + 7 + 1))
    torch.testing.assert_close(f_out, f_expected, **tolerance_for(f_expected, ops=4 + 2))


def test_init_is_seeded_with_unit_decoder_rows_tied_encoder_and_zero_biases():
    a = SparseAutoencoder(8, 32, generator=torch.Generator().manual_seed(3))
    b = SparseAutoencoder(8, 32, generator=torch.Generator().manual_seed(3))
    c = SparseAutoencoder(8, 32, generator=torch.Generator().manual_seed(4))
    for name, p in a.state_dict().items():
        assert torch.equal(p, b.state_dict()[name]), name
    assert not torch.equal(a.W_dec, c.W_dec)
    torch.testing.assert_close(a.W_dec.norm(dim=1), torch.ones(32))
    torch.testing.assert_close(a.W_enc, a.W_dec.T)
    assert torch.count_nonzero(a.b_enc) == 0 and torch.count_nonzero(a.b_dec) == 0


def test_normalize_decoder_makes_every_row_unit_norm_in_place_keeping_directions():
    sae = SparseAutoencoder(5, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.1, 7.0, 10)[:, None])
    before = sae.W_dec.detach().clone()
    storage = sae.W_dec.data_ptr()
    sae.normalize_decoder_()
    assert sae.W_dec.data_ptr() == storage
    assert sae.W_dec.grad is None and sae.W_dec.requires_grad
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(10))
    torch.testing.assert_close(sae.W_dec, before / before.norm(dim=1, keepdim=True))


# ----------------------------------------------------------------------------- loss and metrics


def test_sae_loss_matches_a_hand_computed_example():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    x_hat = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    f = torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
    # squared errors per row: 4 and 9 -> mean 6.5; L1 per row: 3 and 3 -> mean 3
    torch.testing.assert_close(sae_loss(x, x_hat, f, l1=0.1), torch.tensor(6.5 + 0.1 * 3.0))
    torch.testing.assert_close(sae_loss(x, x_hat, f), torch.tensor(6.5 + 1e-3 * 3.0))
    assert sae_loss(x, x_hat, f).ndim == 0


def test_sae_loss_is_differentiable():
    x = torch.randn(4, 3)
    x_hat = torch.randn(4, 3, requires_grad=True)
    f = torch.rand(4, 5, requires_grad=True)
    sae_loss(x, x_hat, f, l1=0.5).backward()
    torch.testing.assert_close(x_hat.grad, 2 * (x_hat - x).detach() / 4)
    torch.testing.assert_close(f.grad, torch.full((4, 5), 0.5 / 4))


def test_fvu_is_zero_for_a_perfect_reconstruction_and_one_for_the_mean():
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    assert fraction_variance_unexplained(x, x.clone()) == 0.0
    mean = x.mean(dim=0, keepdim=True).expand_as(x)
    assert fraction_variance_unexplained(x, mean) == pytest.approx(1.0)
    assert isinstance(fraction_variance_unexplained(x, mean), float)


def test_fvu_matches_a_hand_computed_value():
    x = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # mean (1, 1): total variance 2 + 2 = 4
    x_hat = torch.tensor([[0.0, 1.0], [2.0, 2.0]])  # squared error 1
    assert fraction_variance_unexplained(x, x_hat) == pytest.approx(0.25)


def test_fvu_of_constant_data_raises_value_error():
    with pytest.raises(ValueError, match="zero variance"):
        fraction_variance_unexplained(torch.ones(4, 3), torch.zeros(4, 3))


def test_sae_metrics_on_a_hand_built_sae():
    sae = hand_sae()
    x = torch.tensor([[1.0, 2.0], [3.0, 0.5], [2.0, 1.0]])  # positive: latents -e1 and -e2 never fire
    metrics = sae_metrics(sae, x)
    assert metrics == {"mse": 0.0, "fvu": 0.0, "l0": 2.0, "dead_fraction": 0.5}
    with torch.no_grad():
        sae.b_dec.fill_(1.0)  # shifts every latent: x_hat = x except where an input dips below 1
    x_hat, f = sae(x)
    expected_mse = float((x_hat - x).detach().pow(2).mean())
    metrics = sae_metrics(sae, x)
    assert metrics["mse"] == pytest.approx(expected_mse)
    assert metrics["fvu"] == pytest.approx(fraction_variance_unexplained(x, x_hat))
    assert metrics["l0"] == pytest.approx(float((f > 0).sum(dim=1).float().mean()))


def test_sae_metrics_mse_is_per_element():
    sae = SparseAutoencoder(3, 6)
    with torch.no_grad():
        sae.b_enc.fill_(-1e6)  # every latent off: x_hat = b_dec = 0
    x = torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 3.0]])
    metrics = sae_metrics(sae, x)
    assert metrics["mse"] == pytest.approx((1 + 4 + 4 + 9) / 6)
    assert metrics["l0"] == 0.0 and metrics["dead_fraction"] == 1.0


# ----------------------------------------------------------------------------- training


def test_training_on_sparse_combinations_reaches_low_fvu_and_the_true_l0(sparse_data, one_latent_per_direction):
    x, directions, codes = sparse_data
    sae, history = one_latent_per_direction
    metrics = sae_metrics(sae, x)
    true_l0 = float((codes > 0).sum(dim=1).float().mean())
    assert metrics["fvu"] < 0.1
    assert abs(metrics["l0"] - true_l0) < 0.1, (metrics["l0"], true_l0)
    assert metrics["dead_fraction"] == 0.0
    assert history["fvu"][-1] < history["fvu"][0]


def test_training_gives_each_ground_truth_direction_its_own_latent(sparse_data, one_latent_per_direction):
    _, directions, _ = sparse_data
    sae, _ = one_latent_per_direction
    cosine = directions @ sae.W_dec.detach().T  # (direction, latent)
    assert bool((cosine.max(dim=1).values > 0.9).all()), cosine.max(dim=1).values
    assert sorted(cosine.argmax(dim=1).tolist()) == list(range(8))


def test_overcomplete_training_recovers_the_directions_with_few_active_latents(sparse_data, overcomplete):
    x, directions, _ = sparse_data
    sae, _ = overcomplete
    best_cosine = (directions @ sae.W_dec.detach().T).max(dim=1).values
    assert int((best_cosine > 0.9).sum()) >= 7, best_cosine
    metrics = sae_metrics(sae, x)
    assert metrics["fvu"] < 0.1
    assert metrics["l0"] < 8  # a quarter of the 32 latents; duplicated directions may share a sample


def test_history_has_one_float_per_epoch_for_every_metric(overcomplete):
    _, history = overcomplete
    assert set(history) == {"loss", "mse", "fvu", "l0", "dead_fraction", "resampled"}
    assert all(len(values) == 8 for values in history.values())
    assert all(isinstance(v, float) for values in history.values() for v in values)


def test_decoder_rows_have_unit_norm_after_every_training_step(monkeypatch):
    norms: list[torch.Tensor] = []
    original_forward = SparseAutoencoder.forward

    def recording_forward(self: SparseAutoencoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        norms.append(self.W_dec.detach().norm(dim=1))
        return original_forward(self, x)

    monkeypatch.setattr(SparseAutoencoder, "forward", recording_forward)
    x, _, _ = sparse_dictionary_data(n=512)
    start = SparseAutoencoder(32, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        start.W_dec.mul_(3.0)  # not unit: training must normalise before the first step
    sae, _ = train_sae(x, 16, l1=0.2, epochs=3, batch_size=64, resample_every=5, seed=0, sae=start)
    assert len(norms) >= 3 * 8  # one forward per step, plus resampling passes
    for row_norms in norms + [sae.W_dec.detach().norm(dim=1)]:
        torch.testing.assert_close(row_norms, torch.ones(16))


def test_the_optimizer_never_sees_gradient_along_the_decoder_rows(monkeypatch):
    parallel: list[torch.Tensor] = []
    original_step = torch.optim.Adam.step

    def recording_step(self: torch.optim.Adam, *args, **kwargs):
        for group in self.param_groups:
            for p in group["params"]:
                if p.shape == (16, 32) and p.grad is not None:  # W_dec
                    parallel.append((p.grad * p.detach()).sum(dim=1) / p.grad.norm(dim=1).clamp_min(1e-12))
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    x, _, _ = sparse_dictionary_data(n=512)
    train_sae(x, 16, l1=0.2, epochs=2, batch_size=64, seed=0)
    assert len(parallel) == 16
    for cosines in parallel:
        # zero up to the roundings of the projection and the two 32-term sums, at the scale of unit vectors
        zero = torch.zeros(16)
        torch.testing.assert_close(cosines, zero, **tolerance_for(zero, ops=3 * 32, magnitude=1.0))


def test_training_starts_the_decoder_bias_at_the_data_mean():
    x, _, _ = sparse_dictionary_data(n=512)
    x = x + torch.linspace(-3.0, 3.0, 32)
    sae, _ = train_sae(x, 16, epochs=1, batch_size=512, lr=1e-9, seed=0)
    expected = x.mean(dim=0)  # the same mean, divided by the scale and multiplied back, plus a 1e-9 step
    torch.testing.assert_close(sae.b_dec, expected, **tolerance_for(expected, ops=4))


def test_training_is_deterministic_for_a_seed():
    x, _, _ = sparse_dictionary_data(n=1024)
    a, history_a = train_sae(x, 16, l1=0.2, epochs=2, batch_size=64, resample_every=10, seed=7)
    b, history_b = train_sae(x, 16, l1=0.2, epochs=2, batch_size=64, resample_every=10, seed=7)
    c, _ = train_sae(x, 16, l1=0.2, epochs=2, batch_size=64, resample_every=10, seed=8)
    for name, p in a.state_dict().items():
        assert torch.equal(p, b.state_dict()[name]), name
    assert history_a == history_b
    assert not torch.equal(a.W_dec, c.W_dec)


def test_trained_sae_works_on_raw_activations_whatever_their_scale():
    x, _, _ = sparse_dictionary_data(n=1024)
    x = x + 0.5  # an offset the decoder bias must absorb
    # A power of two: 128 x / s(128 x) is x / s(x) bit for bit, so both trainings see the same numbers and agree up to
    # rounding (with 100 x, Adam amplified the rounding differences of 16 steps to 1e-4 in W_dec, 1e-3 in encode).
    scale = 128.0
    small, _ = train_sae(x, 16, l1=0.2, epochs=2, batch_size=128, seed=0)
    large, _ = train_sae(scale * x, 16, l1=0.2, epochs=2, batch_size=128, seed=0)
    torch.testing.assert_close(large.W_dec, small.W_dec, **tolerance_for(small.W_dec))
    torch.testing.assert_close(large.b_dec, scale * small.b_dec, **tolerance_for(scale * small.b_dec))
    rtol, atol = float_tolerance(torch.float32, ops=1024 * 32)  # the FVU's sums over all entries
    assert sae_metrics(large, scale * x)["fvu"] == pytest.approx(sae_metrics(small, x)["fvu"], rel=rtol, abs=atol)
    expected = small.encode(x)
    torch.testing.assert_close(large.encode(scale * x) / scale, expected, **tolerance_for(expected, ops=32 + 2))


def test_resampling_revives_dead_latents_during_training():
    x, _, _ = sparse_dictionary_data(n=2048)
    assert sae_metrics(half_dead_sae(), x)["dead_fraction"] == 0.5
    settings = dict(l1=0.2, epochs=3, batch_size=128, seed=0)
    kept, history_kept = train_sae(x, 32, resample_every=None, sae=half_dead_sae(), **settings)
    revived, history = train_sae(x, 32, resample_every=16, sae=half_dead_sae(), **settings)
    assert sae_metrics(kept, x)["dead_fraction"] >= 0.5
    assert sum(history_kept["resampled"]) == 0
    assert sum(history["resampled"]) >= 16
    assert sae_metrics(revived, x)["dead_fraction"] < 0.2


def test_resampling_happens_every_window_except_the_last_so_revived_latents_get_trained():
    x, _, _ = sparse_dictionary_data(n=512)  # 8 steps per epoch of 64 rows

    # windows end at steps 8 and 16 of 16: only the first has a full window after it
    _, history = train_sae(x, 32, l1=0.2, epochs=2, batch_size=64, resample_every=8, seed=0, sae=half_dead_sae())
    assert history["resampled"][0] >= 16 and history["resampled"][1] == 0
    _, history = train_sae(x, 32, l1=0.2, epochs=2, batch_size=64, resample_every=10, seed=0, sae=half_dead_sae())
    assert history["resampled"] == [0.0, 0.0]


def test_resample_dead_latents_reinitialises_only_dead_latents_and_their_adam_state():
    x, _, _ = sparse_dictionary_data(n=512)
    sae = SparseAutoencoder(32, 8, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
    sae_loss(x, *sae(x)).backward()
    optimizer.step()
    with torch.no_grad():
        sae.b_enc[[1, 5]] = -1e4
    dead = torch.zeros(8, dtype=torch.bool)
    dead[[1, 5]] = True
    before = {name: p.detach().clone() for name, p in sae.named_parameters()}
    alive_enc_norm = before["W_enc"][:, ~dead].norm(dim=0).mean()

    count = resample_dead_latents(sae, dead, x, optimizer, generator=torch.Generator().manual_seed(0))

    assert count == 2
    torch.testing.assert_close(sae.W_enc[:, ~dead], before["W_enc"][:, ~dead])
    torch.testing.assert_close(sae.W_dec[~dead], before["W_dec"][~dead])
    torch.testing.assert_close(sae.b_enc[~dead], before["b_enc"][~dead])
    torch.testing.assert_close(sae.W_dec[dead].norm(dim=1), torch.ones(2))
    torch.testing.assert_close(sae.W_enc[:, dead].norm(dim=0), torch.full((2,), 0.2) * alive_enc_norm)
    torch.testing.assert_close(sae.W_enc[:, dead], sae.W_dec[dead].T * 0.2 * alive_enc_norm)
    assert torch.count_nonzero(sae.b_enc[dead]) == 0
    assert bool((sae.encode(x)[:, dead] > 0).any(dim=0).all())
    for param in (sae.W_dec, sae.b_enc):
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.count_nonzero(optimizer.state[param][key][dead]) == 0
            assert torch.count_nonzero(optimizer.state[param][key][~dead]) > 0
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.count_nonzero(optimizer.state[sae.W_enc][key][:, dead]) == 0


def test_train_sae_is_quiet_by_default_and_shows_a_progress_bar_when_asked(capsys):
    x, _, _ = sparse_dictionary_data(n=256)
    train_sae(x, 8, epochs=1, batch_size=64)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    train_sae(x, 8, epochs=1, batch_size=64, quiet=False)
    assert "train SAE" in capsys.readouterr().err


# ----------------------------------------------------------------------------- analysis


def test_latent_equal_to_a_class_indicator_has_correlation_one_with_it():
    labels = torch.tensor([0, 1, 2, 1, 0, 2, 2, 1])
    f = torch.stack([(labels == 2).float(), torch.zeros(8), torch.arange(8.0)], dim=1)
    corr = latent_label_correlation(f, labels, num_classes=4)
    assert corr.shape == (3, 4)
    rtol, atol = float_tolerance(torch.float32, ops=3 * 8)  # means, covariance and variances over 8 rows
    assert corr[0, 2] == pytest.approx(1.0, rel=rtol, abs=atol)
    # disjoint indicators with p = 3/8 and 2/8: -sqrt(p q / ((1 - p)(1 - q)))
    assert corr[0, 0] == pytest.approx(-(0.2**0.5), rel=rtol, abs=atol)
    assert torch.count_nonzero(corr[1]) == 0  # constant latent
    assert torch.count_nonzero(corr[:, 3]) == 0  # class 3 never occurs
    assert not corr.isnan().any()


def test_latent_label_correlation_matches_numpy_pearson():
    np = pytest.importorskip("numpy")
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (200,), generator=g)
    f = torch.rand(200, 6, generator=g) + (labels[:, None] == torch.arange(6)).float()
    corr = latent_label_correlation(f, labels, 5)
    _, atol = float_tolerance(torch.float32, ops=3 * 200)  # float32 sums over 200 rows vs NumPy's float64
    for h in range(6):
        for c in range(5):
            expected = np.corrcoef(f[:, h].numpy(), (labels == c).float().numpy())[0, 1]
            assert float(corr[h, c]) == pytest.approx(expected, abs=atol)


def test_group_variance_explained_is_one_for_a_function_of_the_group_and_zero_without_variance():
    groups = torch.tensor([0, 1, 2, 0, 1, 2])
    f = torch.stack(
        [
            torch.tensor([5.0, 1.0, 3.0, 5.0, 1.0, 3.0]),  # depends on the group only
            torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),  # constant
            torch.tensor([0.0, 0.0, 0.0, 2.0, 2.0, 2.0]),  # same group means: none explained
            torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 6.0]),  # between-group 12 of total 30
        ],
        dim=1,
    )
    torch.testing.assert_close(group_variance_explained(f, groups, 3), torch.tensor([1.0, 0.0, 0.0, 0.4]))


def color_digit_example() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """f (N, 6) with known latents, and independent color ids and digit labels (N,) in [0, 10)."""
    g = torch.Generator().manual_seed(0)
    n = 2000
    colors = torch.randint(0, 10, (n,), generator=g)
    digits = torch.randint(0, 10, (n,), generator=g)
    noise = torch.rand(n, generator=g)
    f = torch.stack(
        [
            (digits == 5).float(),  # 0: a digit latent
            (colors == 3).float(),  # 1: "yellow"
            noise,  # 2: nothing
            (colors == 0).float() * (1 + 0.1 * noise),  # 3: "red", slightly noisy
            (colors == 1).float() + (digits == 2).float(),  # 4: half color, half digit
            ((colors == 4) | (colors == 7)).float() * 2.0,  # 5: "magenta or purple"
        ],
        dim=1,
    )
    return f, colors, digits


def test_latent_selectivity_is_positive_for_color_latents_and_negative_for_digit_latents():
    f, colors, digits = color_digit_example()
    score = latent_selectivity(f, colors, digits)
    assert score.shape == (6,)
    assert score[1] > 0.95 and score[3] > 0.95 and score[5] > 0.95
    assert score[0] < -0.95
    assert abs(float(score[2])) < 0.05 and abs(float(score[4])) < 0.1


def test_select_color_latents_picks_the_constructed_color_latents():
    f, colors, digits = color_digit_example()
    selected = select_color_latents(f, colors, digits, threshold=0.5)
    assert selected.dtype == torch.int64
    assert sorted(selected.tolist()) == [1, 3, 5]
    score = latent_selectivity(f, colors, digits)
    assert score[selected].tolist() == sorted(score[selected].tolist(), reverse=True)
    assert select_color_latents(f, colors, digits, threshold=0.999).numel() == 0


def test_top_activating_returns_the_largest_rows_per_latent_with_ties_by_index():
    f = torch.tensor(
        [
            [0.0, 1.0],
            [3.0, 1.0],
            [2.0, 0.0],
            [3.0, 5.0],
        ]
    )
    torch.testing.assert_close(top_activating(f, 3), torch.tensor([[1, 3, 2], [3, 0, 1]]))
    assert top_activating(f, 1).shape == (2, 1)


# ----------------------------------------------------------------------------- surgery


@pytest.fixture()
def model_and_sae() -> tuple[SimpleCNN, SparseAutoencoder, torch.Tensor]:
    torch.manual_seed(0)
    model = SimpleCNN().eval()
    sae = SparseAutoencoder(128, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.b_enc.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(1))
    images = torch.rand(6, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    return model, sae, images


def test_ablate_latents_changes_the_output_exactly_as_the_formula_says(model_and_sae):
    model, sae, images = model_and_sae
    with torch.no_grad():
        h = model.features(images)
        f = sae.encode(h)
        ids = [int(i) for i in f.sum(dim=0).argsort(descending=True)[:5]]
        assert (f[:, ids] > 0).any()
        expected = model.classifier(h - f[:, ids] @ sae.W_dec[ids])
        before = model(images)
        with ablate_latents(model.penultimate, sae, ids):
            ablated = model(images)
        after = model(images)
    # ablation inside the hook (a 512-latent decode) vs the 5 latents subtracted here, then the 128-input classifier
    torch.testing.assert_close(ablated, expected, **tolerance_for(expected, ops=512 + 128))
    assert not torch.allclose(ablated, before)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert len(model.penultimate._forward_hooks) == 0


def test_ablating_every_latent_leaves_only_the_decoder_bias_and_the_reconstruction_error(model_and_sae):
    model, sae, images = model_and_sae
    layer = nn.Identity()
    with torch.no_grad():
        h = model.features(images)
        with ablate_latents(layer, sae, torch.arange(sae.d_hidden)):
            out = layer(h)
        expected = sae.b_dec + (h - sae(h)[0]).expand_as(h)
        torch.testing.assert_close(out, expected, **tolerance_for(expected, ops=128 + 512 + 2))
        with ablate_latents(layer, sae, []):
            torch.testing.assert_close(layer(h), h, rtol=0, atol=0)


def test_ablate_latents_counts_repeated_ids_once(model_and_sae):
    model, sae, images = model_and_sae
    with torch.no_grad():
        active = sae.encode(model.features(images)).sum(dim=0).argsort(descending=True)[:2].tolist()
        with ablate_latents(model.penultimate, sae, active):
            once = model(images)
        with ablate_latents(model.penultimate, sae, torch.tensor(active + active[::-1] + active)):
            repeated = model(images)
    torch.testing.assert_close(repeated, once)


def test_ablate_latents_removes_its_hook_after_an_exception(model_and_sae):
    model, sae, images = model_and_sae
    with torch.no_grad():
        before = model(images)
        with pytest.raises(RuntimeError, match="boom"):
            with ablate_latents(model.penultimate, sae, [0, 1, 2]):
                assert len(model.penultimate._forward_hooks) == 1
                raise RuntimeError("boom")
        assert len(model.penultimate._forward_hooks) == 0
        torch.testing.assert_close(model(images), before, rtol=0, atol=0)


def test_ablate_latents_keeps_gradients_flowing(model_and_sae):
    model, sae, images = model_and_sae
    images = images.clone().requires_grad_(True)
    with ablate_latents(model.penultimate, sae, [0, 1]):
        model(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- errors a user can cause

FOUR_IDS = torch.tensor([0, 1, 2, 3])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.encode(torch.randn(3, 5)), r"\(N, 4\), got \(3, 5\)"),
        (lambda s: s.encode(torch.randn(4)), r"\(N, 4\), got \(4,\)"),
        (lambda s: s.decode(torch.randn(3, 4)), r"\(N, 8\), got \(3, 4\)"),
        (lambda s: s.encode(torch.ones(3, 4, dtype=torch.long)), "floating-point"),
        (lambda s: sae_loss(torch.randn(3, 4), torch.randn(3, 5), torch.rand(3, 8)), r"x_hat must have the shape"),
        (lambda s: sae_loss(torch.randn(3, 4), torch.randn(3, 4), torch.rand(2, 8)), r"one row per row of x"),
        (lambda s: sae_loss(torch.randn(3, 4), torch.randn(3, 4), torch.rand(3, 8), l1=-1.0), "l1"),
        (lambda s: fraction_variance_unexplained(torch.randn(3, 4), torch.randn(4, 3)), "x_hat must have the shape"),
        (lambda s: sae_metrics(s, torch.randn(10, 5)), r"\(N, 4\)"),
        (lambda s: SparseAutoencoder(0, 8), "d_in must be a positive int"),
        (lambda s: SparseAutoencoder(4, 2.5), "d_hidden must be a positive int"),
        (lambda s: train_sae(torch.randn(10), 8), r"activations must have shape \(N, d_in\)"),
        (lambda s: train_sae(torch.randn(10, 4), 0), "d_hidden"),
        (lambda s: train_sae(torch.randn(10, 4), 8, batch_size=0), "batch_size"),
        (lambda s: train_sae(torch.randn(10, 4), 8, resample_every=0), "resample_every"),
        (lambda s: train_sae(torch.ones(10, 4), 8), "constant"),
        (lambda s: train_sae(torch.randn(10, 4), 16, sae=s), "d_hidden=16"),
        (lambda s: latent_label_correlation(torch.rand(5, 3), torch.tensor([0, 1, 2, 3]), 4), r"shape \(5,\)"),
        (lambda s: latent_label_correlation(torch.rand(4, 3), torch.tensor([0, 1, 2, 4]), 4), r"\[0, 3\]"),
        (lambda s: latent_label_correlation(torch.rand(4, 3), torch.tensor([0.0, 1, 2, 3]), 4), "integer"),
        (lambda s: latent_selectivity(torch.rand(4, 3), torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1])), r"\(4,\)"),
        (lambda s: select_color_latents(torch.rand(4, 3), FOUR_IDS, FOUR_IDS, threshold=1.5), r"in \[-1, 1\]"),
        (lambda s: top_activating(torch.rand(4, 3), 5), "at most"),
        (lambda s: top_activating(torch.rand(4), 1), r"\(N, H\)"),
        (lambda s: ablate_latents(nn.Identity(), s, [8]).__enter__(), r"\[0, 7\]"),
    ],
)
def test_bad_inputs_raise_value_error_saying_what_was_expected(call, message):
    sae = SparseAutoencoder(4, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=message):
        call(sae)


def test_ablate_latents_on_a_layer_with_the_wrong_output_shape_raises_value_error(model_and_sae):
    model, sae, images = model_and_sae
    with pytest.raises(ValueError, match=r"\(N, 128\)"):
        with ablate_latents(model.block3, sae, [0]):
            model(images)
    assert len(model.block3._forward_hooks) == 0
