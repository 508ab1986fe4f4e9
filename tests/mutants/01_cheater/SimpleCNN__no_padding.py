"""Mutant of tests/submissions/01_cheater.py: SimpleCNN is wrong (3x3 convolutions without padding=1); the rest is correct."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SimpleCNN(nn.Module):
    """Three conv blocks and two linear layers: (N, 3, 28, 28) -> logits (N, 10)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.conv3 = nn.Sequential(nn.Conv2d(32, 64, 3), nn.ReLU())
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, num_classes)

    @property
    def target_layer(self) -> nn.Module:
        return self.conv3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer) -> float:
    """One epoch of cross-entropy training; returns the mean loss per sample."""
    model.train()
    total, count = 0.0, 0
    for images, labels, _ in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(labels)
        count += len(labels)
    return total / count


def accuracy(model: nn.Module, loader) -> float:
    """Fraction of samples classified correctly, in eval mode without gradients; the model's mode is restored."""
    was_training = model.training
    model.eval()
    correct, count = 0, 0
    with torch.no_grad():
        for images, labels, _ in loader:
            correct += (model(images).argmax(dim=1) == labels).sum().item()
            count += len(labels)
    model.train(was_training)
    return correct / count


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Counts (num_classes, num_classes) int64: rows are true labels, columns predictions."""
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for t, p in zip(labels.tolist(), predictions.tolist()):
        matrix[t, p] += 1
    return matrix
