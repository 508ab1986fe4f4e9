"""A second correct lesson-05 submission, written apart from tests/submissions/ to measure false similarity flags."""
import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.attacks import AttackResult


def targeted_pgd(model, images, targets, eps=0.05, alpha=0.01, steps=40, random_start=False, stop_confidence=None,
                 generator=None):
    mode = model.training
    model.eval()
    original = images.detach()
    if random_start:
        noise = (torch.rand(original.shape, generator=generator) * 2 - 1) * eps
        adv = (original + noise).clamp(0, 1)
    else:
        adv = original.clone()
    n = original.shape[0]
    first = torch.full((n,), -1, dtype=torch.long)

    def reached(logits):
        if stop_confidence is None:
            return logits.argmax(1) == targets
        return logits.softmax(1).gather(1, targets[:, None]).squeeze(1) >= stop_confidence

    try:
        for t in range(steps + 1):
            with torch.no_grad():
                final = model(adv)
            first = torch.where((first < 0) & reached(final), torch.full_like(first, t), first)
            moving = first < 0 if stop_confidence is not None else torch.ones(n, dtype=torch.bool)
            if t == steps or not bool(moving.any()):
                break
            x = adv.clone().requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(model(x), targets, reduction="sum")
                (g,) = torch.autograd.grad(loss, x)
            stepped = torch.min(torch.max(adv - alpha * g.sign(), original - eps), original + eps).clamp(0, 1)
            adv = torch.where(moving.view(-1, 1, 1, 1), stepped.detach(), adv)
    finally:
        model.train(mode)
    confidence = final.softmax(1).gather(1, targets[:, None]).squeeze(1)
    return AttackResult(adv.detach(), reached(final), first, confidence)
