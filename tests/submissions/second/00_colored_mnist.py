"""A second correct lesson-00 submission, written apart from tests/submissions/ to measure false similarity flags."""
import torch
import torch.nn.functional as F

from shortcutlab.data import BACKGROUND_RANGE, NUM_CLASSES, PALETTE, TEXTURE_GRID


def assign_colors(labels, bias, generator=None):
    result = torch.empty_like(labels)
    for digit in range(NUM_CLASSES):
        where = (labels == digit).nonzero().flatten()
        count = where.numel()
        keep = int(round(bias * count))
        shuffled = where[torch.randperm(count, generator=generator)]
        result[shuffled[:keep]] = digit
        rest = shuffled[keep:]
        if rest.numel():
            # one of the nine others: shift by 1..9 modulo ten
            offsets = torch.randint(1, NUM_CLASSES, (rest.numel(),), generator=generator)
            result[rest] = (digit + offsets) % NUM_CLASSES
    return result.long()


def smooth_texture(n, generator=None):
    low, high = BACKGROUND_RANGE
    coarse = low + (high - low) * torch.rand(n, 1, TEXTURE_GRID, TEXTURE_GRID, generator=generator)
    return F.interpolate(coarse, size=(28, 28), mode="bilinear", align_corners=False)


def colorize(digits, color_ids, background):
    strokes = digits.unsqueeze(1)
    paint = PALETTE.to(digits.dtype)[color_ids].view(-1, 3, 1, 1)
    mixed = strokes * paint + (1.0 - strokes) * background
    return mixed.clamp(min=0.0, max=1.0)


def color_given_digit(labels, color_ids):
    table = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.float32)
    table.index_put_((labels.long(), color_ids.long()), torch.ones(labels.shape[0]), accumulate=True)
    totals = table.sum(dim=1, keepdim=True)
    return torch.where(totals > 0, table / totals.clamp_min(1), table)
