"""Checks of lesson 00: assign_colors, smooth_texture, colorize, color_given_digit (shortcutlab.data is the reference).

colorize and color_given_digit are determined, so they are compared with the reference; assign_colors and
smooth_texture are random, so they are graded on properties (rates with statistical tolerances, ranges,
smoothness, reproducibility with a generator). Tolerances are set so a correct solution fails less than
once in a million runs.
"""
from __future__ import annotations

import math

import torch

from shortcutlab.data import COLOR_NAMES, PALETTE
from shortcutlab.grading import (CheckFailure, Slip, check, expect_close, expect_dtype, expect_equal, expect_range,
                                 expect_shape, expect_true)
from shortcutlab.tolerance import tolerance_for

# Bound at import, before any submission runs, so a submission cannot swap the reference.
from shortcutlab.data import color_given_digit as reference_color_given_digit
from shortcutlab.data import colorize as reference_colorize
from shortcutlab.data import smooth_texture as reference_smooth_texture

NUM_CLASSES = 10
IMAGE = 28
_PALETTE = PALETTE.clone()  # a copy no submission can change in place
# chi-square quantile for 8 degrees of freedom at p = 1e-6: uniform "other colors" exceed it once in a million
CHI2_8DOF_1E6 = 42.7
# Roundings a correct answer may differ by from the reference (shortcutlab.tolerance): colorize's formula, written
# any of the usual ways (d * c + b * (1 - d), b + d * (c - b), lerp), and P(color | digit), a count divided by a count
# (or multiplied by its inverse); its row sums add 10 of those.
COLORIZE_OPS, CGD_OPS = 4, 2
ROW_SUM_OPS = NUM_CLASSES + CGD_OPS


def _generator(seed: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 7919 + salt)


def _labels(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, NUM_CLASSES, (n,), generator=g)


def _color_ids(assign_colors, labels: torch.Tensor, bias: float, g: torch.Generator | None) -> torch.Tensor:
    """The student's colors for ``labels``, checked for shape, dtype and id range first."""
    before = labels.clone()
    colors = assign_colors(labels, bias, generator=g)
    what = f"assign_colors(labels of shape ({len(labels)},), bias={bias:g})"
    expect_shape(colors, (len(labels),), what, hint="one color id per label")
    expect_dtype(colors, torch.int64, what)
    expect_range(colors, 0, NUM_CLASSES - 1, what, hint="color ids index PALETTE, so they lie in 0..9")
    expect_true(torch.equal(labels, before), f"{what} changed the labels it was given; work on a copy")
    return colors


# ----------------------------------------------------------------------------- assign_colors


@check("assign_colors", kind="property")
def test_assign_colors_returns_one_color_id_per_label(assign_colors, seed):
    """Shape (N,), int64 ids in 0..9, for a random N and bias."""
    g = _generator(seed, 1)
    n = int(torch.randint(20, 300, (1,), generator=g))
    bias = round(float(torch.empty(1).uniform_(0.5, 0.99, generator=g)), 2)
    _color_ids(assign_colors, _labels(n, g), bias, torch.Generator().manual_seed(seed))


@check("assign_colors")
def test_assign_colors_uses_the_dominant_color_at_rate_bias(assign_colors, seed):
    """The fraction of samples in their digit's own color is bias, overall and per digit (5-sigma tolerance).

    20,000 samples and a bias in [0.3, 0.7]: drawing the other color among all ten (so the dominant one again with
    probability (1 - bias) / 10) is off by at least 0.03, beyond the 5-sigma tolerance for every seed."""
    g = _generator(seed, 2)
    bias = round(float(torch.empty(1).uniform_(0.3, 0.7, generator=g)), 2)
    labels = _labels(20000, g)
    colors = _color_ids(assign_colors, labels, bias, torch.Generator().manual_seed(seed))
    dominant = colors == labels
    rate = float(dominant.float().mean())
    tolerance = 5 * math.sqrt(bias * (1 - bias) / len(labels)) + 0.005
    expect_true(abs(rate - bias) <= tolerance,
                f"with bias={bias:g}, {rate:.1%} of the {len(labels)} samples got their digit's own color; expected "
                f"{bias:.0%} (within {tolerance:.1%}). Hint: give the dominant color (color id = label) with "
                "probability bias, and otherwise one of the nine other colors")
    for digit in range(NUM_CLASSES):
        mine = labels == digit
        count = int(mine.sum())
        digit_rate = float(dominant[mine].float().mean())
        digit_tolerance = 5 * math.sqrt(bias * (1 - bias) / count) + 0.01
        expect_true(abs(digit_rate - bias) <= digit_tolerance,
                    f"with bias={bias:g}, digit {digit} got its own color ({COLOR_NAMES[digit]}) in {digit_rate:.1%} "
                    f"of its {count} samples; expected {bias:.0%} (within {digit_tolerance:.1%}). Hint: every digit's dominant color is "
                    "PALETTE[digit], i.e. color id = label")
    ones = _color_ids(assign_colors, labels[:500], 1.0, torch.Generator().manual_seed(seed))
    expect_equal(ones, labels[:500], "assign_colors(labels, bias=1.0)",
                 hint="with bias=1 every sample gets its digit's own color")


def _exact_count_inputs(seed: int) -> tuple[float, list[int], torch.Tensor]:
    """A bias b = p/100 and per-digit counts n_k where b * n_k has a fractional part in [0.6, 0.9], so
    round(b * n_k) = int(b * n_k) + 1 for every digit (no floating-point or half-way ambiguity), and labels with
    those counts in random order."""
    g = _generator(seed, 6)
    percents = [p for p in range(30, 91) if p != 50]  # b * n_k for b = 0.5 never has a fractional part in [0.6, 0.9]
    percent = percents[int(torch.randint(0, len(percents), (1,), generator=g))]
    candidates = [n for n in range(60, 200) if 60 <= (n * percent) % 100 <= 90]
    counts = [candidates[int(torch.randint(0, len(candidates), (1,), generator=g))] for _ in range(NUM_CLASSES)]
    labels = torch.cat([torch.full((n,), digit, dtype=torch.int64) for digit, n in enumerate(counts)])
    return percent / 100, counts, labels[torch.randperm(len(labels), generator=g)]


@check("assign_colors", kind="property")
def test_assign_colors_gives_exactly_round_bias_n_dominant_colors_per_digit(assign_colors, seed):
    """Of digit k's n_k samples exactly round(bias * n_k) get color k (counts chosen so round and int() differ)."""
    bias, counts, labels = _exact_count_inputs(seed)
    colors = _color_ids(assign_colors, labels, bias, torch.Generator().manual_seed(seed))
    got = [int(((labels == digit) & (colors == digit)).sum()) for digit in range(NUM_CLASSES)]
    wanted = [round(bias * n) for n in counts]
    wrong = [digit for digit in range(NUM_CLASSES) if got[digit] != wanted[digit]]
    if not wrong:
        return
    d = wrong[0]
    # Name a cause only on evidence: the counts another generator gives tell a per-sample draw from a wrong rule.
    again = _color_ids(assign_colors, labels, bias, torch.Generator().manual_seed(seed + 1))
    got_again = [int(((labels == digit) & (again == digit)).sum()) for digit in range(NUM_CLASSES)]
    if all(got[k] == int(bias * counts[k]) for k in range(NUM_CLASSES)):
        hint = Slip("int_truncates", "int(bias * n_k) rounds down; use round(bias * n_k)")
    elif all(got[k] == math.ceil(bias * counts[k]) for k in range(NUM_CLASSES)):
        hint = Slip("ceil_rounds_up", "math.ceil(bias * n_k) rounds up; use round(bias * n_k)")
    elif all(got[k] == round((1 - bias) * counts[k]) for k in range(NUM_CLASSES)):
        hint = Slip("bias_inverted", "digit k got its own color round((1 - bias) * n_k) times: bias is the share "
                    "of a digit's samples that get its own color")
    elif bool((_color_ids(assign_colors, labels, 0.0, torch.Generator().manual_seed(seed)) == labels).any()):
        hint = Slip("other_color_may_repeat", "with bias=0 some samples still get their own digit's color, so the "
                    "samples meant for other colors can draw the dominant one too: draw their color from the nine "
                    "others only")
    elif got_again != got:
        hint = Slip("count_left_to_chance", "the counts change with the generator, so they are right only on "
                    "average: of digit k's n_k positions pick exactly round(bias * n_k) at random (e.g. the first "
                    "round(bias * n_k) of a random permutation drawn with generator) instead of drawing rand < bias "
                    "for each sample")
    else:
        hint = ("the counts are the same for every generator but not round(bias * n_k): check which samples you "
                "count as digit k's and how many of them you give color k")
    raise CheckFailure(f"with bias={bias:g}, {len(wrong)} of 10 digits got their own color a wrong number of times, "
                       f"e.g. digit {d}: {got[d]} of its {counts[d]} samples; exactly round({bias:g} * {counts[d]}) = "
                       f"round({bias * counts[d]:.2f}) = {wanted[d]} should. Hint: {hint}", hint=hint)


@check("assign_colors", kind="property")
def test_assign_colors_never_gives_the_dominant_color_at_bias_zero(assign_colors, seed):
    """bias=0 is the hard test split: no sample may get its digit's own color."""
    g = _generator(seed, 3)
    labels = _labels(2000, g)
    colors = _color_ids(assign_colors, labels, 0.0, torch.Generator().manual_seed(seed))
    same = (colors == labels).nonzero().flatten()
    if len(same):
        i = int(same[0])
        raise CheckFailure(f"with bias=0, {len(same)} of 2000 samples still got their digit's own color, e.g. "
                           f"sample {i} (label {int(labels[i])}, color id {int(colors[i])}). Hint: draw the other "
                           "color among the nine colors that are not the digit's, e.g. (label + randint(1, 10)) % 10")


@check("assign_colors", kind="property")
def test_assign_colors_spreads_the_other_colors_uniformly(assign_colors, seed):
    """Among non-dominant samples, each of the nine other colors is equally likely (chi-square test)."""
    g = _generator(seed, 4)
    labels = _labels(20000, g)
    colors = _color_ids(assign_colors, labels, 0.5, torch.Generator().manual_seed(seed))
    others = colors != labels
    offsets = (colors[others] - labels[others]) % NUM_CLASSES  # 1..9: which other color, relative to the digit
    counts = torch.bincount(offsets, minlength=NUM_CLASSES)[1:].double()
    expected = counts.sum() / 9
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    expect_true(chi2 < CHI2_8DOF_1E6,
                f"with bias=0.5 the non-dominant colors are not uniform over the nine other colors: counts of "
                f"(color - label) % 10 = 1..9 are {counts.long().tolist()} (chi-square {chi2:.0f}, expected below "
                f"{CHI2_8DOF_1E6}). Hint: pick uniformly among the nine colors other than the digit's")
    for digit in range(NUM_CLASSES):
        seen = colors[(labels == digit) & others].unique().tolist()
        expect_true(len(seen) == NUM_CLASSES - 1,
                    f"digit {digit} is only ever drawn in colors {seen} besides its own; all nine other colors "
                    "should appear")


@check("assign_colors", kind="property")
def test_assign_colors_is_reproducible_with_a_generator(assign_colors, seed):
    """Same seeded generator, same colors; another seed, other colors and other dominant samples (all randomness
    from ``generator``)."""
    g = _generator(seed, 5)
    labels = _labels(500, g)
    first = _color_ids(assign_colors, labels, 0.8, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed + 1)  # global RNG moves: a function that ignores `generator` gives other colors
    again = _color_ids(assign_colors, labels, 0.8, torch.Generator().manual_seed(seed))
    expect_true(torch.equal(first, again), "two calls with identically seeded generators gave different colors. "
                "Hint: draw every random number with generator=generator (torch.rand(..., generator=generator))")
    other = _color_ids(assign_colors, labels, 0.8, torch.Generator().manual_seed(seed + 12345))
    expect_true(not torch.equal(first, other), "generators with different seeds gave identical colors: the colors "
                "must be random, drawn from the generator")
    expect_true(not torch.equal(first == labels, other == labels), "generators with different seeds gave the "
                "dominant color to exactly the same samples. Hint: choose which round(bias * n_k) samples of digit k "
                "get color k at random, e.g. with torch.randperm(n_k, generator=generator)")


# ----------------------------------------------------------------------------- smooth_texture


def _textures(smooth_texture, n: int, seed: int) -> torch.Tensor:
    out = smooth_texture(n, generator=torch.Generator().manual_seed(seed))
    what = f"smooth_texture({n})"
    expect_shape(out, (n, 1, IMAGE, IMAGE), what, hint="n grayscale backgrounds (n, 1, 28, 28)")
    expect_dtype(out, torch.float32, what)
    return out


@check("smooth_texture", kind="property")
def test_smooth_texture_returns_backgrounds_between_0_1_and_0_3(smooth_texture, seed):
    """Shape (n, 1, 28, 28), float32, every value in [0.1, 0.3]."""
    n = int(torch.randint(2, 20, (1,), generator=_generator(seed, 10)))
    out = _textures(smooth_texture, n, seed)
    expect_range(out, 0.1, 0.3, f"smooth_texture({n})",
                 hint="map noise u in [0, 1] to 0.1 + 0.2 * u, after smoothing")


@check("smooth_texture")
def test_smooth_texture_is_smooth_not_white_noise(smooth_texture, seed):
    """A texture: each background varies (not flat), and neighbouring pixels differ far less than in white noise of
    the same spread."""
    out = _textures(smooth_texture, 16, seed).double()
    std = out.flatten(1).std(dim=1)
    flat = int(std.argmin())
    expect_true(float(std[flat]) > 0.005, f"background {flat} is (nearly) flat: its values vary by a standard "
                f"deviation of {float(std[flat]):.4f}. A texture varies across the image: draw random noise")
    std = std.clamp_min(1e-12)
    step = ((out[..., 1:, :] - out[..., :-1, :]).abs().flatten(1).mean(dim=1)
            + (out[..., :, 1:] - out[..., :, :-1]).abs().flatten(1).mean(dim=1)) / 2
    # white noise: mean |neighbour difference| = 1.13 std; the reference (7x7 noise upsampled) about 0.28 std
    ratio = float((step / std).mean())
    expect_true(ratio < 0.7, f"the backgrounds look like white noise: neighbouring pixels differ by {ratio:.2f} "
                "standard deviations on average (smooth textures: below 0.7). Hint: draw low-resolution noise "
                "(e.g. 7x7) and upsample it to 28x28 with bilinear interpolation (F.interpolate)")


@check("smooth_texture", kind="property")
def test_smooth_texture_varies_within_and_across_images(smooth_texture, seed):
    """Not flat: each image varies, images differ, and values use most of [0.1, 0.3]."""
    out = _textures(smooth_texture, 32, seed)
    std = out.flatten(1).std(dim=1)
    flat = int(std.argmin())
    expect_true(float(std[flat]) > 0.005, f"background {flat} is (nearly) flat: its values vary by a standard "
                f"deviation of {float(std[flat]):.4f}. A texture varies across the image")
    expect_true(float((out - out[:1]).abs().amax()) > 1e-3, "all the backgrounds are the same image; draw "
                "independent noise for each of the n backgrounds")
    low, high = float(out.min()), float(out.max())
    expect_true(low < 0.15 and high > 0.25, f"32 backgrounds span only [{low:.3f}, {high:.3f}]; they should use "
                "most of [0.1, 0.3] (lowest value below 0.15, highest above 0.25). Hint: scale noise in [0, 1] as "
                "0.1 + 0.2 * noise")


@check("smooth_texture", kind="property")
def test_smooth_texture_is_reproducible_with_a_generator(smooth_texture, seed):
    """Same seeded generator, same textures; another seed, other textures."""
    first = _textures(smooth_texture, 4, seed)
    torch.manual_seed(seed + 1)
    again = _textures(smooth_texture, 4, seed)
    expect_true(torch.equal(first, again), "two calls with identically seeded generators gave different textures. "
                "Hint: draw the noise with torch.rand(..., generator=generator)")
    other = _textures(smooth_texture, 4, seed + 12345)
    expect_true(not torch.equal(first, other), "generators with different seeds gave identical textures")


# ----------------------------------------------------------------------------- colorize


def _colorize_inputs(seed: int, n: int, salt: int, low: float = 0.0, high: float = 1.0):
    g = _generator(seed, salt)
    digits = torch.empty(n, IMAGE, IMAGE).uniform_(low, high, generator=g)
    digits[:, :, :8] = 0.0  # a blank margin: pure background there
    color_ids = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    background = reference_smooth_texture(n, generator=g)
    return digits, color_ids, background


def _colorize_hint(digits: torch.Tensor, color_ids: torch.Tensor, background: torch.Tensor,
                   got: torch.Tensor) -> str:
    """The usual slips, recognised from the value they produce."""
    d = digits.unsqueeze(1)
    color = _PALETTE[color_ids].view(-1, 3, 1, 1)
    slips = {
        Slip("no_background", "the background is missing: add background * (1 - d)"): (d * color).clamp(0, 1),
        Slip("background_not_weighted", "the background is added without the (1 - d) factor: use background * "
             "(1 - d)"): (d * color + background).clamp(0, 1),
        Slip("weights_swapped", "digit and background weights are swapped: the stroke is d * PALETTE[c], the "
             "background background * (1 - d)"): ((1 - d) * color + background * d).clamp(0, 1),
    }
    for hint, value in slips.items():
        if got.shape == value.shape and torch.allclose(got.detach().float(), value,
                                                       **tolerance_for(value, ops=COLORIZE_OPS)):
            return hint
    return ("out = clamp(d * PALETTE[c] + background * (1 - d), 0, 1) with d of shape (N, 1, 28, 28) and "
            "PALETTE[c] of shape (N, 3, 1, 1)")


def _call_colorize(colorize, digits, color_ids, background) -> torch.Tensor:
    n = len(digits)
    out = colorize(digits.clone(), color_ids.clone(), background.clone())
    expect_shape(out, (n, 3, IMAGE, IMAGE), f"colorize of {n} digits",
                 hint="RGB channels come first: (N, 3, 28, 28)")
    expect_dtype(out, torch.float32, f"colorize of {n} digits")
    return out


@check("colorize", kind="property")
def test_colorize_returns_rgb_images_in_unit_range(colorize, seed):
    """Shape (N, 3, 28, 28), float32, values in [0, 1]."""
    n = int(torch.randint(1, 9, (1,), generator=_generator(seed, 20)))
    out = _call_colorize(colorize, *_colorize_inputs(seed, n, 21))
    expect_range(out, 0.0, 1.0, f"colorize of {n} digits")


@check("colorize", kind="property")
def test_colorize_shows_background_where_blank_and_color_on_full_strokes(colorize, seed):
    """d = 0 gives the gray background in all three channels; d = 1 gives exactly PALETTE[c]."""
    digits, color_ids, background = _colorize_inputs(seed, 4, 22)
    digits.zero_()
    digits[:, 14:20, 10:18] = 1.0
    out = _call_colorize(colorize, digits, color_ids, background)
    blank = background[:, :, :14].expand(-1, 3, -1, -1)
    expect_close(out[:, :, :14], blank, "colorize where the digit is blank (d = 0)",
                 **tolerance_for(blank, ops=COLORIZE_OPS),
                 hint="where d = 0 the image is the background, the same gray in R, G and B")
    k = int(torch.randint(0, 4, (1,), generator=_generator(seed, 23)))
    wanted = _PALETTE[color_ids[k]]
    got = out[k, :, 16, 12]
    expect_close(got, wanted, f"the pixel color of image {k}'s full stroke (d = 1, color id {int(color_ids[k])}, "
                 f"{COLOR_NAMES[int(color_ids[k])]})", **tolerance_for(wanted, ops=COLORIZE_OPS),
                 hint="where d = 1 the pixel is PALETTE[color_ids[i]]")


@check("colorize")
def test_colorize_matches_the_formula(colorize, seed):
    """clamp(d * PALETTE[c] + background * (1 - d), 0, 1) on random strokes, colors and backgrounds."""
    n = int(torch.randint(2, 9, (1,), generator=_generator(seed, 24)))
    digits, color_ids, background = _colorize_inputs(seed, n, 25)
    out = _call_colorize(colorize, digits, color_ids, background)
    expected = reference_colorize(digits, color_ids, background)
    expect_close(out, expected, f"colorize of {n} random digits", **tolerance_for(expected, ops=COLORIZE_OPS),
                 hint=_colorize_hint(digits, color_ids, background, out))


@check("colorize", kind="property")
def test_colorize_clamps_to_unit_range(colorize, seed):
    """Stroke intensities slightly outside [0, 1] (as after resampling) still give images in [0, 1]."""
    digits, color_ids, background = _colorize_inputs(seed, 6, 26, low=-0.3, high=1.3)
    out = _call_colorize(colorize, digits, color_ids, background)
    d, color = digits.unsqueeze(1), _PALETTE[color_ids].view(-1, 3, 1, 1)
    unclamped = d * color + background * (1 - d)
    hint = Slip("no_clamp", "clamp the result to [0, 1] (.clamp(0, 1))") \
        if torch.allclose(out, unclamped, **tolerance_for(unclamped, ops=COLORIZE_OPS)) \
        else _colorize_hint(digits, color_ids, background, out)
    expected = reference_colorize(digits, color_ids, background)
    expect_close(out, expected, "colorize of strokes with intensities in [-0.3, 1.3]",
                 **tolerance_for(expected, ops=COLORIZE_OPS), hint=hint)


@check("colorize", kind="property")
def test_colorize_leaves_its_inputs_unchanged(colorize, seed):
    """Digits, color ids and backgrounds are the caller's: no in-place changes."""
    digits, color_ids, background = _colorize_inputs(seed, 3, 27)
    copies = digits.clone(), color_ids.clone(), background.clone()
    colorize(digits, color_ids, background)
    for name, tensor, copy in zip(("digits", "color_ids", "background"), (digits, color_ids, background), copies):
        expect_true(torch.equal(tensor, copy), f"colorize changed its argument {name} in place; compute a new tensor "
                    "instead (avoid in-place operations such as mul_ or += on the inputs)")
    expect_true(torch.equal(PALETTE, _PALETTE), "colorize changed PALETTE in place; index it without modifying it")


# ----------------------------------------------------------------------------- color_given_digit


def _skewed_pairs(seed: int, n: int, salt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and color ids where each digit prefers its own color (so rows and columns differ)."""
    g = _generator(seed, salt)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    dominant = torch.rand(n, generator=g) < 0.6
    colors = torch.where(dominant, labels, torch.randint(0, NUM_CLASSES, (n,), generator=g))
    return labels, colors


def _call_cgd(color_given_digit, labels: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    out = color_given_digit(labels.clone(), colors.clone())
    what = f"color_given_digit of {len(labels)} samples"
    expect_shape(out, (NUM_CLASSES, NUM_CLASSES), what, hint="a 10 x 10 matrix: rows are digits, columns colors")
    expect_dtype(out, torch.float32, what)
    return out


@check("color_given_digit")
def test_color_given_digit_matches_the_counts(color_given_digit, seed):
    """Row d, column c: the fraction of digit-d samples drawn in color c."""
    labels, colors = _skewed_pairs(seed, 600, 30)
    out = _call_cgd(color_given_digit, labels, colors)
    expected = reference_color_given_digit(labels, colors)
    hint = "entry [d, c] = (number of samples with label d and color c) / (number of samples with label d)"
    ones = torch.ones(NUM_CLASSES)
    if torch.allclose(out, expected.T, **tolerance_for(expected, ops=CGD_OPS)):
        hint = Slip("transposed", "the matrix is transposed: rows must be digits (labels), columns colors")
    elif torch.allclose(out.sum(dim=0), ones, **tolerance_for(ones, ops=ROW_SUM_OPS)):
        hint = Slip("columns_normalised", "columns sum to 1 but rows must: normalise each digit's row by that digit's "
                    "count")
    expect_close(out, expected, "P(color | digit)", **tolerance_for(expected, ops=CGD_OPS), hint=hint)


@check("color_given_digit", kind="property")
def test_color_given_digit_rows_are_probability_distributions(color_given_digit, seed):
    """Every row of a digit that occurs sums to 1 and has no negative entry."""
    labels, colors = _skewed_pairs(seed, 300, 31)
    out = _call_cgd(color_given_digit, labels, colors)
    expect_range(out, 0.0, 1.0, "P(color | digit)")
    ones = torch.ones(NUM_CLASSES)
    expect_close(out.sum(dim=1), ones, "the row sums of P(color | digit)", **tolerance_for(ones, ops=ROW_SUM_OPS),
                 hint="each row d is a distribution over colors: divide by the number of samples of digit d")


@check("color_given_digit", kind="property")
def test_color_given_digit_gives_zero_rows_for_absent_digits(color_given_digit, seed):
    """A digit with no samples gets a row of zeros (no NaN from dividing by zero)."""
    labels, colors = _skewed_pairs(seed, 300, 32)
    absent = int(torch.randint(0, NUM_CLASSES, (1,), generator=_generator(seed, 33)))
    keep = labels != absent
    out = _call_cgd(color_given_digit, labels[keep], colors[keep])
    hint = f"row {absent} must be all zeros: divide only rows whose count is above 0 (e.g. by counts.clamp_min(1))"
    if bool(torch.isnan(out[absent]).any()):
        hint = Slip("zero_division_nan", f"row {absent} is NaN: digit {absent} has no samples, so its row is 0 / 0. "
                    "Divide by the row total clamped to at least 1 (rows of absent digits stay 0)")
    expected = reference_color_given_digit(labels[keep], colors[keep])
    expect_close(out, expected, f"P(color | digit) when digit {absent} never occurs",
                 **tolerance_for(expected, ops=CGD_OPS), hint=hint)
