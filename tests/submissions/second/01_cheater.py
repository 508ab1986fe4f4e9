"""A second correct lesson-01 submission, written apart from tests/submissions/ to measure false similarity flags."""
import torch
import torch.nn.functional as F
from torch import nn


class SimpleCNN(nn.Module):
    def __init__(self, num_classes=10, width=16, hidden=128):
        super().__init__()
        layers = []
        channels = [3, width, 2 * width, 4 * width]
        for i in range(3):
            pool = nn.MaxPool2d(2) if i < 2 else nn.Identity()
            layers.append(nn.Sequential(nn.Conv2d(channels[i], channels[i + 1], kernel_size=3, padding=1), nn.ReLU(), pool))
        self.blocks = nn.ModuleList(layers)
        self.fc1 = nn.Linear(channels[-1] * 7 * 7, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    @property
    def target_layer(self):
        return self.blocks[-1]

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def train_one_epoch(model, loader, optimizer):
    model.train()
    seen, summed = 0, 0.0
    for batch in loader:
        x, y = batch[0], batch[1]
        optimizer.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        optimizer.step()
        summed += float(loss.detach()) * len(y)
        seen += len(y)
    return summed / max(seen, 1)


def accuracy(model, loader):
    previous = model.training
    model.eval()
    hits = total = 0
    try:
        with torch.no_grad():
            for batch in loader:
                guess = model(batch[0]).argmax(1)
                hits += int((guess == batch[1]).sum())
                total += batch[1].numel()
    finally:
        model.train(previous)
    return hits / total if total else 0.0


def confusion_matrix(predictions, labels, num_classes=10):
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
