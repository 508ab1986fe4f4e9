"""Trained networks as torch.export programs: how a student edition ships a pretrained model while its class is
an exercise (weights and the computation graph, never the class's source). ``ExportedModel`` answers as the
original does: forward, ``target_layer`` (for Grad-CAM hooks) and ``features`` (the penultimate activations)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from shortcutlab.errors import ShortcutlabError

SUFFIX = ".pt2"
SHIPPED_MODELS = Path(__file__).resolve().parent / "pretrained"  # in a student edition only (shortcutlab/edition)
_META = "shortcutlab.json"  # extra file in the program's archive: where target_layer and features live


class ExportedModel(nn.Module):
    """A network loaded from its exported program: images (N, 3, 28, 28) -> what the original returned (logits,
    or GRLNet's pair). Frozen in the mode it was exported in (eval): ``train()`` changes no layer's behaviour."""

    def __init__(self, program: torch.export.ExportedProgram, target_layer: str | None = None,
                 features: str | None = None) -> None:
        super().__init__()
        self.net = torch.export.unflatten(program)
        self._target_layer, self._features = target_layer, features

    @property
    def target_layer(self) -> nn.Module:
        if self._target_layer is None:
            raise AttributeError("this exported model was saved without a target layer")
        return self.net.get_submodule(self._target_layer)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, hidden) for images (N, 3, 28, 28), read by a hook during a forward pass."""
        if self._features is None:
            raise AttributeError("this exported model was saved without its features layer")
        captured: list[torch.Tensor] = []
        handle = self.net.get_submodule(self._features).register_forward_hook(
            lambda module, inputs, output: captured.append(output))
        try:
            self.net(x)
        finally:
            handle.remove()
        return captured[0]

    def forward(self, x: torch.Tensor):  # noqa: ANN201 - whatever the original network returned
        return self.net(x)


def _submodule_name(model: nn.Module, attribute: str) -> str | None:
    module = getattr(model, attribute, None)
    names = {id(m): name for name, m in model.named_modules()}
    return names.get(id(module)) if isinstance(module, nn.Module) else None


def export_model(model: nn.Module, path: str | Path) -> Path:
    """Save ``model`` (any batch size, on the CPU, in eval mode) as an exported program at ``path``."""
    # Contiguous weights: training leaves channels-last ones, which the program's archive stores as partial tensors
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    example = torch.zeros(2, 3, 28, 28)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    meta = {"target_layer": _submodule_name(model, "target_layer"), "features": _submodule_name(model, "penultimate")}
    path = Path(path)
    torch.export.save(program, path, extra_files={_META: json.dumps(meta)})
    return path


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> ExportedModel:
    """The network saved by ``export_model`` at ``path``, on ``device``, in eval mode."""
    extra = {_META: ""}
    try:
        program = torch.export.load(path, extra_files=extra)
    except Exception as exc:  # noqa: BLE001 - any unreadable program: say which file and what to do
        raise ShortcutlabError(f"cannot load the exported model {path} ({exc}); reinstall the course's wheel") from exc
    meta = json.loads(extra[_META] or "{}")
    return ExportedModel(program, meta.get("target_layer"), meta.get("features")).to(device).eval()


def shipped_model_path(name: str) -> Path:
    """Where a student edition keeps study model ``name`` (trained on the embedded digits, seed 42) as an exported
    program, which ``shortcutlab.pretrained`` loads."""
    return SHIPPED_MODELS / f"{name}{SUFFIX}"
