"""A second correct lesson-04 submission, written apart from tests/submissions/ to measure false similarity flags."""
import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.data import recolor
from shortcutlab.models import SimpleCNN


def symmetric_kl(logits_p, logits_q):
    lp, lq = logits_p.log_softmax(-1), logits_q.log_softmax(-1)
    p, q = lp.exp(), lq.exp()
    per_sample = (p * (lp - lq)).sum(-1) + (q * (lq - lp)).sum(-1)
    return 0.5 * per_sample.mean()


def consistency_loss(model, images, labels, new_color_ids, weight=2.0):
    both = model(torch.cat([images, recolor(images, new_color_ids)]))
    if isinstance(both, (tuple, list)):
        both = both[0]
    first, second = both[: len(images)], both[len(images):]
    return F.cross_entropy(first, labels) + weight * symmetric_kl(first, second)


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, strength):
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return -ctx.strength * grad_output, None


def grad_reverse(x, strength=1.0):
    return _ReverseGradient.apply(x, strength)


class GRLNet(nn.Module):
    def __init__(self, num_classes=10, num_colors=10, strength=1.0, width=16, hidden=128):
        super().__init__()
        self.strength = float(strength)
        self.backbone = SimpleCNN(num_classes=num_classes, width=width, hidden=hidden)
        half = hidden // 2
        self.color_head = nn.Sequential(nn.Linear(hidden, half), nn.ReLU(), nn.Linear(half, num_colors))

    @property
    def target_layer(self):
        return self.backbone.target_layer

    def forward(self, x):
        shared = self.backbone.features(x)
        digits = self.backbone.classifier(shared)
        colors = self.color_head(grad_reverse(shared, self.strength))
        return digits, colors


def grl_loss(model, images, labels, color_ids, color_weight=0.5):
    digit_out, color_out = model(images)
    digit_term = F.cross_entropy(digit_out, labels)
    return digit_term + color_weight * F.cross_entropy(color_out, color_ids)
