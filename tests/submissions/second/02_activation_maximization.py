"""A second correct lesson-02 submission, written apart from tests/submissions/ to measure false similarity flags."""
import torch
from torch import nn


def total_variation(images):
    down = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).sum(1)
    across = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).sum(1)
    return down + across


def activation_maximization(model, target_class, steps=256, lr=0.05, l2=1e-3, tv=1e-2, generator=None,
                            image_shape=(3, 28, 28)):
    was_training = model.training
    model.eval()
    start = 0.4 + 0.2 * torch.rand((1, *image_shape), generator=generator)
    x = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            out = model(x)
            logits = out[0] if isinstance(out, tuple) else out
            objective = logits[0, target_class] - l2 * x.pow(2).sum() - tv * total_variation(x).sum()
            (grad,) = torch.autograd.grad(-objective, x)  # the model's parameters get no .grad
            x.grad = grad
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)
    model.train(was_training)
    return x.detach()
