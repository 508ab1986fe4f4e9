"""Does the judge's re-run of a check see exactly what the student's call did, from data alone?

``Recorder`` wraps a student function in the process that runs it; its transcript travels as JSON (no pickle);
``replayers`` stand in for the function in the judge, which re-runs the same check code on its own objects.
Each test runs one check body twice: once with the recorded student function, once with the replayer.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shortcutlab.attacks import AttackResult
from shortcutlab.grading import CheckFailure
from shortcutlab.grading.engine.replay import NotReplayable, Recorder, replayers


def _round_trip(check, student, name="f"):
    """``check(f)`` with the student's function recorded, then with the replayer on fresh objects: both results,
    and the transcript as it travelled (JSON)."""
    recorder = Recorder()
    torch.manual_seed(3)
    ran = check(recorder.wrap(name, student))
    transcript = json.loads(json.dumps(recorder.transcript()))
    torch.manual_seed(3)
    replayed = check(replayers(transcript, [name])[name])
    return ran, replayed, transcript


def _replay(check, transcript, name="f"):
    torch.manual_seed(3)
    return check(replayers(transcript, [name])[name])


def _assert_same(ran, replayed):
    assert len(ran) == len(replayed)
    for a, b in zip(ran, replayed):
        if isinstance(a, torch.Tensor):
            assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
        else:
            assert a == b


def test_recorded_answers_replay_results_and_in_place_changes_elsewhere():
    """What a student function returned and changed in place (a tensor, a generator) comes back in the re-run."""

    def student(x, generator=None):
        x.mul_(2)
        noise = torch.rand(3, generator=generator)
        return {"noise": noise, "sum": float(x.sum()), "pair": (torch.Size([2]), torch.int64)}

    recorder = Recorder()
    recorded = recorder.wrap("f", student)
    out = recorded(torch.ones(2), generator=torch.Generator().manual_seed(5))
    transcript = json.loads(json.dumps(recorder.transcript()))  # it travels as JSON
    x, g = torch.ones(2), torch.Generator().manual_seed(5)
    again = replayers(transcript, ["f"])["f"](x, generator=g)
    assert torch.equal(again["noise"], out["noise"]) and again["sum"] == 4.0 and again["pair"] == out["pair"]
    assert torch.equal(x, torch.full((2,), 2.0))
    moved = torch.Generator().manual_seed(5)
    torch.rand(3, generator=moved)
    assert torch.equal(torch.rand(1, generator=g), torch.rand(1, generator=moved))


@pytest.mark.parametrize("tamper, message", [
    (lambda t: t["calls"]["f"].clear(), "reported no answer"),
    (lambda t: t["calls"]["f"][0].update(digest="0" * 64), "called with other arguments"),
    (lambda t: t["calls"]["f"][0].update(result={"tensor": 0, "dtype": "float32; import os", "shape": [2]}),
     "malformed"),
    (lambda t: t["calls"]["f"][0].update(result={"tensor": 0, "dtype": "float32", "shape": [99]}), "malformed"),
    (lambda t: t["calls"]["f"][0].update(result={"opaque": "builtins.object"}), "cannot compare"),
    (lambda t: t.update(blobs=["!!not base64!!"]), "malformed"),
])
def test_a_forged_or_broken_record_fails_the_check_in_the_re_run(tamper, message):
    recorder = Recorder()
    recorder.wrap("f", lambda x: x * 2)(torch.ones(2))
    transcript = json.loads(json.dumps(recorder.transcript()))
    tamper(transcript)
    with pytest.raises(CheckFailure, match=message):
        replayers(transcript, ["f"])["f"](torch.ones(2))


def test_a_call_that_needs_a_live_object_the_grader_does_not_carry_cannot_be_replayed():
    replayer = replayers({"calls": {"f": []}, "blobs": []}, ["f"])["f"]
    with pytest.raises(NotReplayable, match="function"):
        replayer(lambda x: x)
    data = TensorDataset(torch.rand(4, 2))
    with pytest.raises(NotReplayable, match="DataLoader"):
        replayer(DataLoader(data, batch_size=2, shuffle=True))

    class Sneaky(torch.Tensor):
        pass

    with pytest.raises(NotReplayable, match="Sneaky"):
        replayer(torch.ones(2).as_subclass(Sneaky))


# ----------------------------------------------------------------------------- models, gradients, optimizers


class _Net(nn.Module):
    """Linear -> Dropout -> Linear, seeded, handed over in train mode, with a public list it fills at each forward."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.first, self.drop, self.last = nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2)
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.last(self.drop(torch.relu(self.first(x))))


def _check_with_a_model(f):
    """Hands f a model and an input that requires gradients, then differentiates f's answer."""
    model = _Net().train()
    x = torch.rand(5, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    out = f(model, x)
    (out ** 2).sum().backward()
    return (out.detach(), x.grad, model.first.weight.grad, model.first.bias.detach(), model.training,
            model.drop.training, len(model.first._forward_hooks), list(model.modes), torch.rand(2))


def _student_with_side_effects(model, x):
    """Left in eval mode, a hook left on a layer, a parameter changed in place, the global RNG drawn from."""
    model.eval()
    model.first.register_forward_hook(lambda *a: None)
    with torch.no_grad():
        model.first.bias.add_(1.0)
    torch.rand(7)
    return model(x) * 3


def test_a_model_argument_comes_back_with_its_parameters_mode_hooks_attributes_and_gradients():
    ran, replayed, _ = _round_trip(_check_with_a_model, _student_with_side_effects)
    _assert_same(ran, replayed)
    assert ran[4] is False and ran[6] == 1 and ran[7] == [False]  # the side effects did happen


def test_the_gradient_of_an_answer_reaches_the_judges_own_inputs_and_parameters():
    ran, replayed, transcript = _round_trip(_check_with_a_model, lambda model, x: model.eval()(x).tanh())
    _assert_same(ran, replayed)
    assert ran[1] is not None and ran[1].abs().sum() > 0 and ran[2].abs().sum() > 0
    assert len(transcript["calls"]["f"][0]["backward"]) == 1


@pytest.mark.parametrize("tamper, message", [
    (lambda call: call["backward"][0].update(digest="0" * 64), "gradient flowing into"),
    (lambda call: call["backward"].clear(), "no gradient"),
    (lambda call: call["backward"][0]["grads"].pop(), "malformed"),
    (lambda call: call["changed"][0][1]["hooks"][1].__setitem__(0, 10**6), "cannot replay"),
    (lambda call: call["changed"][0][1]["params"].pop(), "cannot replay"),
])
def test_a_forged_gradient_or_state_record_fails_the_check(tamper, message):
    _, _, transcript = _round_trip(_check_with_a_model, _student_with_side_effects)
    tamper(transcript["calls"]["f"][0])
    with pytest.raises(CheckFailure, match=message):
        _replay(_check_with_a_model, transcript)


def test_a_training_step_with_a_torch_optimizer_and_a_loader_replays_weights_and_optimizer_state():
    def check(f):
        model = _Net()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        data = TensorDataset(torch.rand(6, 3, generator=torch.Generator().manual_seed(2)),
                             torch.randint(0, 2, (6,), generator=torch.Generator().manual_seed(3)))
        losses = [f(model, DataLoader(data, batch_size=4), optimizer) for _ in range(2)]
        state = optimizer.state[model.first.weight]
        return (*losses, model.first.weight.detach(), state["exp_avg"], state["step"], model.last.weight.grad)

    def train(model, loader, optimizer):
        model.train()
        total = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        return total

    ran, replayed, _ = _round_trip(check, train)
    _assert_same(ran, replayed)


def test_an_attack_result_comes_back_as_the_librarys_dataclass_and_another_as_its_fields():
    @dataclasses.dataclass
    class Mine:
        images: torch.Tensor
        ok: bool

    def check(f):
        return f(torch.ones(2))

    result = AttackResult(torch.ones(2), torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.long),
                          torch.full((2,), 0.5))
    ran, replayed, _ = _round_trip(check, lambda x: result)
    assert isinstance(replayed, AttackResult) and torch.equal(replayed.confidence, result.confidence)
    _, other, _ = _round_trip(check, lambda x: Mine(x * 2, True))
    assert torch.equal(other.images, torch.full((2,), 2.0)) and other.ok is True


def test_an_exception_of_the_checks_own_model_reaches_the_re_run_as_itself():
    class Refused(Exception):
        pass

    Refused.__module__ = "shortcutlab_checks_test_replay"
    import sys
    import types

    sys.modules["shortcutlab_checks_test_replay"] = types.SimpleNamespace(Refused=Refused)
    try:
        def check(f):
            with pytest.raises(Refused, match="on purpose"):
                f(torch.ones(1))
            return (True,)

        def student(x):
            raise Refused("on purpose")

        ran, replayed, _ = _round_trip(check, student)
        assert ran == replayed == (True,)
    finally:
        del sys.modules["shortcutlab_checks_test_replay"]
