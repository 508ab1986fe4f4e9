"""Values as plain data between the student's process and the judge: JSON-able trees plus byte blobs, never pickle.

``Encoder`` turns what a check hands a student function, and what the function gives back, into a tree of
JSON values whose tensors, arrays and generator states are indexes into a list of byte blobs. Live objects that
checks hand over are carried as their observable state: an ``nn.Module`` as its parameters and buffers (with their
gradients), every submodule's mode and hook counts and its public plain attributes; a ``torch.optim`` optimizer as
its hyper-parameters and per-parameter state; a ``DataLoader`` over a ``TensorDataset`` as its tensors and batching;
an object of a check file's own class (a duck-typed optimizer) as its attributes. ``decode`` reads a tree back
(``DecodeError`` for anything malformed: the tree came from the student's process), and ``apply_state`` copies a
recorded state into the judge's own live object, keeping its identity (the check holds references to it).
"""
from __future__ import annotations

import dataclasses
import math
import sys
import types
from typing import Any

from shortcutlab.grading.engine.limits import RECORD_BYTES, RECORD_DEPTH, RECORD_NODES
from shortcutlab.grading.registry import CHECK_MODULE_PREFIX, NotReplayable

HOOK_KINDS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


class TooBig(Exception):
    """A value over the recording budget."""


class _Unencodable(Exception):
    """An attribute of a live object that is not plain data (left out of its state, in every process alike)."""


class DecodeError(Exception):
    """A recorded value is malformed (never trusted: it came from the student's process)."""


class Opaque:
    """Stands for a recorded value of a type the grader does not carry between processes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<{self.kind} object>"


def qualified_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _is_check_class(kind: type) -> bool:
    return str(getattr(kind, "__module__", "")).startswith(CHECK_MODULE_PREFIX)


class Encoder:
    """Values to JSON-able trees plus byte blobs.

    ``strict``: NotReplayable for a value that is not carried (the judge's side), else it is recorded as opaque.
    ``leaves`` collects the mutable values met among a call's arguments (tensors, arrays, generators, modules,
    optimizers, check-file objects) with a signature of their state, so a call's in-place changes can be found;
    ``sources`` the tensors requiring gradients (argument tensors, parameters of argument modules) an answer may be
    differentiated with respect to, each once, in the order met.
    """

    def __init__(self, strict: bool, budget: int = RECORD_BYTES, taps: dict[int, int] | None = None) -> None:
        self.strict, self.budget, self.taps = strict, budget, taps or {}
        self.blobs: list[bytes] = []
        self.leaves: list[Any] = []
        self.leaf_signatures: list[bytes] = []
        self.sources: list[Any] = []
        self._source_ids: set[int] = set()
        self.nodes = 0
        self._attribute_depth = 0  # > 0 while encoding a live object's attributes: unencodable ones are left out

    # -- helpers

    def _blob(self, data: bytes) -> int:
        self.budget -= len(data)
        if self.budget < 0:
            raise TooBig("too_big")
        self.blobs.append(data)
        return len(self.blobs) - 1

    def _opaque(self, value: Any, why: str = "") -> dict:
        kind = qualified_name(type(value))
        if self._attribute_depth:
            raise _Unencodable(kind)
        if self.strict:
            raise NotReplayable(why or f"it is given a {kind}")
        return {"opaque": kind}

    def _leaf(self, value: Any, start: int, node: Any) -> None:
        """Remember ``value`` as a mutable argument, with the signature of its state (``node`` and the blobs its
        encoding added from ``start``)."""
        self.leaves.append(value)
        self.leaf_signatures.append(signature(shift(node, -start), self.blobs[start:]))

    def _source(self, tensor: Any) -> None:
        if tensor.requires_grad and id(tensor) not in self._source_ids:
            self._source_ids.add(id(tensor))
            self.sources.append(tensor)

    # -- values

    def encode(self, value: Any, depth: int = 0, leaf: bool = True) -> Any:
        self.nodes += 1
        if self.nodes > RECORD_NODES or depth > RECORD_DEPTH:
            if self.strict and not self._attribute_depth:
                raise NotReplayable("its arguments are too large or too deeply nested")
            raise TooBig("too_big")
        kind = type(value)
        if value is None or kind in (bool, int, str):
            return value
        if kind is float:
            return {"float": repr(value)}
        if kind is tuple:
            return {"t": [self.encode(v, depth + 1, leaf) for v in value]}
        if kind is list:
            return {"l": [self.encode(v, depth + 1, leaf) for v in value]}
        if kind is dict:
            if not all(type(k) is str for k in value):
                return self._opaque(value, "it is given a dict with keys that are not strings")
            return {"d": [[k, self.encode(v, depth + 1, leaf)] for k, v in value.items()]}
        torch = sys.modules.get("torch")
        if torch is not None:
            if kind is torch.Size:
                return {"size": [int(s) for s in value]}
            if kind is torch.dtype:
                return {"dtype": str(value).removeprefix("torch.")}
            if kind is torch.device:
                return {"device": str(value)}
            if isinstance(value, torch.Tensor):
                return self._tensor(torch, value, leaf)
            if kind is torch.Generator:
                if value.device.type != "cpu":
                    return self._opaque(value)
                start = len(self.blobs)
                node = {"gen": self._blob(value.get_state().numpy().tobytes())}
                if leaf:
                    self._leaf(value, start, node)
                return node
            if isinstance(value, torch.nn.Module):
                return self._live(value, depth, leaf, lambda: self._module(torch, value, depth))
            if isinstance(value, torch.optim.Optimizer):
                return self._live(value, depth, leaf, lambda: self._optimizer(value, depth))
            if isinstance(value, torch.utils.data.DataLoader):
                return self._loader(torch, value, depth)
        np = sys.modules.get("numpy")
        if np is not None and (kind is np.ndarray or isinstance(value, np.generic)):
            array = np.asarray(value)
            if array.dtype.kind not in "biufc" or array.dtype.hasobject:
                return self._opaque(value)
            start = len(self.blobs)
            data = np.ascontiguousarray(array).tobytes()
            node = {"nd": self._blob(data), "dtype": array.dtype.str, "shape": list(array.shape),
                    "scalar": kind is not np.ndarray}
            if leaf and kind is np.ndarray:
                self._leaf(value, start, node)
            return node
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {"dc": qualified_name(kind),
                    "fields": [[f.name, self.encode(getattr(value, f.name), depth + 1, leaf)]
                               for f in dataclasses.fields(value)]}
        if _is_check_class(kind):
            return self._live(value, depth, leaf, lambda: {"obj": qualified_name(kind),
                                                           "attrs": self._attributes(value, depth)})
        return self._opaque(value)

    def _tensor(self, torch: Any, value: Any, leaf: bool) -> dict:
        if type(value) not in (torch.Tensor, torch.nn.Parameter) or value.layout != torch.strided or \
                value.device.type != "cpu" or value.is_quantized:
            return self._opaque(value)
        start = len(self.blobs)
        node = {"tensor": self._blob(tensor_bytes(value)), "dtype": str(value.dtype).removeprefix("torch."),
                "shape": list(value.shape), "rg": bool(value.requires_grad)}
        if id(value) in self.taps:
            node["tap"] = self.taps[id(value)]
        if value.is_leaf and value.grad is not None:
            grad = value.grad
            if type(grad) is not torch.Tensor or grad.layout != torch.strided or grad.shape != value.shape:
                return self._opaque(value, "it is given a tensor whose gradient is not a plain tensor")
            node["grad"] = self._blob(tensor_bytes(grad))
            node["grad_dtype"] = str(grad.dtype).removeprefix("torch.")
        if leaf:
            self._source(value)
            self._leaf(value, start, node)
        return node

    # -- live objects: carried as their observable state

    def _live(self, value: Any, depth: int, leaf: bool, state: Any) -> dict:
        if self._attribute_depth:  # a live object inside another one's attributes (its state is the outer one's)
            raise _Unencodable(qualified_name(type(value)))
        start = len(self.blobs)
        node = state()
        if leaf:
            self._leaf(value, start, node)
        return node

    def _attributes(self, obj: Any, depth: int) -> list:
        """``obj``'s public plain-data attributes (``[[name, node], ...]``); others are left out."""
        pairs = []
        for name, value in sorted(vars(obj).items()):
            if name.startswith("_") or name == "training":
                continue
            start, nodes = len(self.blobs), self.nodes
            self._attribute_depth += 1
            try:
                pairs.append([name, self.encode(value, depth + 1, leaf=False)])
            except (_Unencodable, TooBig):
                del self.blobs[start:]
                self.nodes = nodes
            finally:
                self._attribute_depth -= 1
        return pairs

    def _module(self, torch: Any, module: Any, depth: int) -> dict:
        modules = list(module.named_modules())
        node: dict[str, Any] = {
            "module": qualified_name(type(module)),
            "names": [name for name, _ in modules],
            "training": [bool(m.training) for _, m in modules],
            "hooks": [[len(getattr(m, kind, None) or {}) for kind in HOOK_KINDS] for _, m in modules],
            "attrs": [self._attributes(m, depth) for _, m in modules],
            "params": [], "buffers": [],
        }
        for name, parameter in module.named_parameters():
            node["params"].append([name, self._tensor(torch, parameter, leaf=False)])
            self._source(parameter)
        for name, buffer in module.named_buffers():
            node["buffers"].append([name, self._tensor(torch, buffer, leaf=False)])
        return node

    def _optimizer(self, optimizer: Any, depth: int) -> dict:
        params = optimizer_parameters(optimizer)
        index = {id(p): i for i, p in enumerate(params)}
        groups = [{"d": [[k, self.encode(v, depth + 2, leaf=False)] for k, v in sorted(group.items()) if k != "params"],
                   "params": [index[id(p)] for p in group["params"]]} for group in optimizer.param_groups]
        state = []
        for parameter, values in optimizer.state.items():
            if id(parameter) not in index or not isinstance(values, dict) or \
                    not all(type(k) is str for k in values):
                return self._opaque(optimizer, "it is given an optimizer whose state the grader cannot read")
            state.append([index[id(parameter)], self.encode(values, depth + 2, leaf=False)])
        # Its other attributes (defaults, hooks) do not change in a step; param_groups and state are above.
        return {"optim": qualified_name(type(optimizer)), "groups": groups, "state": sorted(state, key=lambda s: s[0])}

    def _loader(self, torch: Any, loader: Any, depth: int) -> dict:
        dataset, sampler = loader.dataset, loader.sampler
        if type(dataset) is not torch.utils.data.TensorDataset or \
                type(sampler) is not torch.utils.data.SequentialSampler or loader.batch_sampler is None or \
                type(loader.batch_sampler) is not torch.utils.data.BatchSampler or loader.collate_fn is not \
                torch.utils.data.default_collate:
            return self._opaque(loader, "it is given a DataLoader other than a TensorDataset in order")
        return {"loader": [self.encode(t, depth + 1, leaf=False) for t in dataset.tensors],
                "batch_size": loader.batch_size, "drop_last": bool(loader.drop_last)}


def is_plain_value(value: Any) -> bool:
    """A tensor, array or generator: carried whole, rather than as the state the student's process observed."""
    torch, np = sys.modules.get("torch"), sys.modules.get("numpy")
    return (torch is not None and isinstance(value, (torch.Tensor, torch.Generator))) or \
        (np is not None and isinstance(value, np.ndarray))


def optimizer_parameters(optimizer: Any) -> list:
    """Every parameter of ``optimizer``'s groups, each once, in order."""
    seen, params = set(), []
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            if id(parameter) not in seen:
                seen.add(id(parameter))
                params.append(parameter)
    return params


def tensor_bytes(tensor: Any) -> bytes:
    """The raw bytes of a CPU strided tensor, in C order."""
    import torch

    flat = tensor.detach().resolve_conj().resolve_neg().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def signature(tree: Any, blobs: list[bytes]) -> bytes:
    """Equal for equal encoded values (tree and blobs)."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(tree, sort_keys=True).encode())
    for blob in blobs:
        digest.update(len(blob).to_bytes(8, "little"))
        digest.update(blob)
    return digest.digest()


def shift(tree: Any, offset: int) -> Any:
    """``tree`` with every blob index moved by ``offset`` (its blobs appended after ``offset`` others)."""
    if isinstance(tree, list):
        return [shift(v, offset) for v in tree]
    if isinstance(tree, dict):
        return {k: (v + offset if k in ("tensor", "gen", "nd", "grad") and type(v) is int else shift(v, offset))
                for k, v in tree.items()}
    return tree


# ----------------------------------------------------------------------------- decoding (untrusted input)


def _dtype(torch: Any, name: Any) -> Any:
    value = getattr(torch, name, None) if isinstance(name, str) and name.isidentifier() else None
    if not isinstance(value, torch.dtype):
        raise DecodeError(f"unknown dtype {name!r}")
    return value


def _shape(shape: Any) -> list[int]:
    if not isinstance(shape, list) or len(shape) > 64 or not all(type(s) is int and s >= 0 for s in shape):
        raise DecodeError("bad shape")
    return shape


def _blob(node: dict, key: str, blobs: list[bytes]) -> bytes:
    index = node.get(key)
    if type(index) is not int or not 0 <= index < len(blobs):
        raise DecodeError("bad blob index")
    return blobs[index]


def _tensor_from(torch: Any, data: bytes, dtype: Any, shape: list[int]) -> Any:
    count = math.prod(shape)
    if count * torch.empty((), dtype=dtype).element_size() != len(data):
        raise DecodeError("tensor size does not match its data")
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)


def decode_tensor(node: dict, blobs: list[bytes]) -> tuple[Any, Any]:
    """A recorded tensor and its recorded gradient (None if it had none), both plain tensors."""
    import torch

    shape = _shape(node.get("shape"))
    tensor = _tensor_from(torch, _blob(node, "tensor", blobs), _dtype(torch, node.get("dtype")), shape)
    grad = None
    if "grad" in node:
        grad = _tensor_from(torch, _blob(node, "grad", blobs), _dtype(torch, node.get("grad_dtype")), shape)
    return tensor, grad


def decode(node: Any, blobs: list[bytes], depth: int = 0, tap: Any = None) -> Any:
    """The value an encoded tree stands for; DecodeError if it is malformed. ``tap(index, tensor, requires_grad)``
    builds the tensor of a recorded answer that the check may differentiate."""
    if depth > RECORD_DEPTH + 2:
        raise DecodeError("too deep")
    if node is None or type(node) in (bool, int, str):
        return node
    if type(node) is not dict or len(node) < 1:
        raise DecodeError(f"unexpected {type(node).__name__}")
    if "float" in node:
        try:
            return float(node["float"])
        except (TypeError, ValueError):
            raise DecodeError("bad float") from None
    if "t" in node or "l" in node:
        items = node.get("t", node.get("l"))
        if not isinstance(items, list):
            raise DecodeError("bad sequence")
        values = [decode(v, blobs, depth + 1, tap) for v in items]
        return tuple(values) if "t" in node else values
    if "d" in node:
        return dict(_pairs(node["d"], blobs, depth, tap))
    if "dc" in node:
        return _dataclass(str(node["dc"]), dict(_pairs(node.get("fields"), blobs, depth, tap)))
    for kind in ("opaque", "module", "optim", "obj", "loader"):
        if kind in node:
            return Opaque(str(node[kind] if kind != "loader" else "torch.utils.data.DataLoader")[:200])
    if "too_big" in node:
        return Opaque("value too large to record")
    if "nd" in node:
        import numpy as np

        try:
            dtype = np.dtype(str(node.get("dtype")))
        except TypeError:
            raise DecodeError("bad array dtype") from None
        if dtype.kind not in "biufc" or dtype.hasobject:
            raise DecodeError("bad array dtype")
        shape, data = _shape(node.get("shape")), _blob(node, "nd", blobs)
        if math.prod(shape) * dtype.itemsize != len(data):
            raise DecodeError("array size does not match its data")
        array = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        return array[()] if node.get("scalar") else array
    import torch

    if "size" in node:
        return torch.Size(_shape(node["size"]))
    if "dtype" in node and len(node) == 1:
        return _dtype(torch, node["dtype"])
    if "device" in node:
        try:
            return torch.device(str(node["device"]))
        except (RuntimeError, ValueError):
            raise DecodeError("bad device") from None
    if "tensor" in node:
        tensor, _ = decode_tensor(node, blobs)
        requires_grad = node.get("rg") is True and tensor.is_floating_point()
        if tap is not None and type(node.get("tap")) is int:
            return tap(node["tap"], tensor, requires_grad)
        return tensor.requires_grad_(requires_grad)
    if "gen" in node:
        generator = torch.Generator()
        try:
            generator.set_state(torch.frombuffer(bytearray(_blob(node, "gen", blobs)), dtype=torch.uint8))
        except (RuntimeError, ValueError):
            raise DecodeError("bad generator state") from None
        return generator
    raise DecodeError("unknown record")


def _mapping(pairs: Any) -> list:
    """A recorded mapping's ``[[key, node], ...]``, checked: string keys."""
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 and type(p[0]) is str
                                              for p in pairs):
        raise DecodeError("bad mapping")
    return pairs


def _pairs(pairs: Any, blobs: list[bytes], depth: int, tap: Any = None) -> list[tuple[str, Any]]:
    return [(k, decode(v, blobs, depth + 1, tap)) for k, v in _mapping(pairs)]


def _dataclass(name: str, fields: dict[str, Any]) -> Any:
    """A recorded dataclass: the library's own class when it names one (e.g. AttackResult), else a namespace with
    the same fields (the student's own dataclass is compared field by field)."""
    module, _, qualname = name.rpartition(".")
    if module.startswith("shortcutlab.") and module in sys.modules and qualname.isidentifier():
        kind = getattr(sys.modules[module], qualname, None)
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            names = {f.name for f in dataclasses.fields(kind) if f.init}
            if names == set(fields):
                try:
                    return kind(**fields)
                except Exception:  # noqa: BLE001 - a validating __post_init__ rejects it: compared as fields
                    pass
    return types.SimpleNamespace(**fields)


# ----------------------------------------------------------------------------- applying a recorded state


def apply_state(target: Any, node: Any, blobs: list[bytes], problem: str) -> None:
    """Make the judge's live ``target`` (an argument of a replayed call) what the student's call left it as,
    in place; CheckFailure-worthy mismatches raise ValueError(problem)."""
    if not isinstance(node, dict):
        raise DecodeError("bad change record")
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")  # loaded wherever such a target exists
    if np is not None and isinstance(target, np.ndarray) and "nd" in node:
        new = decode(node, blobs)
        if getattr(new, "shape", None) != target.shape or new.dtype != target.dtype:
            raise ValueError(problem)
        target[...] = new
    elif "obj" in node and node["obj"] == qualified_name(type(target)):
        _apply_attributes(target, node.get("attrs"), blobs)
    elif torch is None:
        raise ValueError(problem)
    elif isinstance(target, torch.Generator) and "gen" in node:
        target.set_state(decode(node, blobs).get_state())
    elif isinstance(target, torch.Tensor) and "tensor" in node:
        _apply_tensor(torch, target, node, blobs, problem)
    elif isinstance(target, torch.nn.Module) and "module" in node:
        _apply_module(torch, target, node, blobs, problem)
    elif isinstance(target, torch.optim.Optimizer) and "optim" in node:
        _apply_optimizer(target, node, blobs, problem)
    else:
        raise ValueError(problem)


def _apply_tensor(torch: Any, target: Any, node: dict, blobs: list[bytes], problem: str) -> None:
    new, grad = decode_tensor(node, blobs)
    with torch.no_grad():
        if target.shape == new.shape and target.dtype == new.dtype:
            target.copy_(new)
        else:
            try:
                target.set_(new.clone())
            except RuntimeError:
                raise ValueError(problem) from None
    if target.is_leaf:
        target.grad = grad.to(target.dtype) if grad is not None and grad.dtype != target.dtype and \
            grad.is_floating_point() else grad


def _noop_hook(*args: Any) -> None:
    return None


def _apply_module(torch: Any, target: Any, node: dict, blobs: list[bytes], problem: str) -> None:
    from torch.utils.hooks import RemovableHandle

    modules = list(target.named_modules())
    names, flags, hooks, attrs = (node.get(k) for k in ("names", "training", "hooks", "attrs"))
    if node.get("module") != qualified_name(type(target)) or names != [n for n, _ in modules] or \
            not all(isinstance(v, list) and len(v) == len(modules) for v in (flags, hooks, attrs)):
        raise ValueError(problem)
    for (_, module), training, counts, pairs in zip(modules, flags, hooks, attrs):
        module.training = bool(training)
        if not isinstance(counts, list) or len(counts) != len(HOOK_KINDS):
            raise DecodeError("bad hook counts")
        for kind, count in zip(HOOK_KINDS, counts):
            hooks_now = getattr(module, kind)
            if type(count) is not int or count < len(hooks_now) or count > 10_000:
                raise ValueError(problem)  # it removed hooks it did not add, or a forged count
            while len(hooks_now) < count:  # stand-ins for hooks the student's call left behind: they do nothing
                hooks_now[RemovableHandle(hooks_now).id] = _noop_hook
        _apply_attributes(module, pairs, blobs)
    for key, own in (("params", dict(target.named_parameters())), ("buffers", dict(target.named_buffers()))):
        recorded = node.get(key)
        if not isinstance(recorded, list) or [p[0] for p in recorded if isinstance(p, list)] != list(own):
            raise ValueError(problem)
        for name, tensor_node in recorded:
            if not isinstance(tensor_node, dict) or "tensor" not in tensor_node:
                raise DecodeError("bad parameter record")
            _apply_tensor(torch, own[name], tensor_node, blobs, problem)


def _apply_optimizer(target: Any, node: dict, blobs: list[bytes], problem: str) -> None:
    params = optimizer_parameters(target)
    state = node.get("state")
    if node.get("optim") != qualified_name(type(target)) or not isinstance(state, list):
        raise ValueError(problem)
    target.state.clear()
    for entry in state:
        if not (isinstance(entry, list) and len(entry) == 2 and type(entry[0]) is int and 0 <= entry[0] < len(params)):
            raise DecodeError("bad optimizer state")
        values = decode(entry[1], blobs)
        if not isinstance(values, dict):
            raise DecodeError("bad optimizer state")
        target.state[params[entry[0]]] = values
    groups = node.get("groups")
    if not isinstance(groups, list) or len(groups) != len(target.param_groups):
        raise ValueError(problem)
    for group, recorded in zip(target.param_groups, groups):
        if not isinstance(recorded, dict):
            raise DecodeError("bad optimizer group")
        for key, value in _pairs(recorded.get("d"), blobs, 0):
            if key != "params":
                group[key] = value


def _apply_attributes(target: Any, pairs: Any, blobs: list[bytes]) -> None:
    if not isinstance(pairs, list):
        raise DecodeError("bad attributes")
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and type(pair[0]) is str and pair[0].isidentifier()
                and not pair[0].startswith("_") and pair[0] != "training"):
            raise DecodeError("bad attribute")
        name, value = pair
        setattr(target, name, merge(getattr(target, name, None), value, blobs))


def merge(old: Any, node: Any, blobs: list[bytes], depth: int = 0) -> Any:
    """The recorded value ``node``, written into ``old`` where both are the same kind of container or tensor (so
    references the check holds see it), else decoded afresh."""
    torch = sys.modules.get("torch")
    if depth > RECORD_DEPTH:
        raise DecodeError("too deep")
    if torch is not None and isinstance(node, dict) and isinstance(old, torch.Tensor) and "tensor" in node and \
            type(old) in (torch.Tensor, torch.nn.Parameter):
        _apply_tensor(torch, old, node, blobs, "an attribute changed shape in a way the grader cannot replay")
        return old
    if isinstance(node, dict) and isinstance(old, list) and type(node.get("l")) is list:
        if len(old) == len(node["l"]):
            for i, item in enumerate(node["l"]):
                old[i] = merge(old[i], item, blobs, depth + 1)
        else:
            old[:] = decode(node, blobs, depth)
        return old
    if isinstance(node, dict) and isinstance(old, tuple) and type(node.get("t")) is list and \
            len(old) == len(node["t"]):
        return tuple(merge(o, n, blobs, depth + 1) for o, n in zip(old, node["t"]))
    if isinstance(node, dict) and type(old) is dict and "d" in node:
        new = {k: merge(old.get(k), v, blobs, depth + 1) for k, v in _mapping(node["d"])}
        old.clear()
        old.update(new)
        return old
    return decode(node, blobs, depth)


def has_opaque(value: Any, depth: int = 0) -> Opaque | None:
    """The first Opaque inside ``value``, if any."""
    if isinstance(value, Opaque):
        return value
    if depth < RECORD_DEPTH and isinstance(value, (tuple, list, dict, types.SimpleNamespace)):
        items = vars(value).values() if isinstance(value, types.SimpleNamespace) else \
            value.values() if isinstance(value, dict) else value
        for item in items:
            found = has_opaque(item, depth + 1)
            if found is not None:
                return found
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and depth < RECORD_DEPTH:
        for f in dataclasses.fields(value):
            found = has_opaque(getattr(value, f.name), depth + 1)
            if found is not None:
                return found
    return None
