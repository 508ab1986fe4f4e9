"""Task 5: targeted PGD from 7 to 3 on hard-test sevens, how easily is each model fooled; and robustness curves,
accuracy under untargeted PGD across budgets, with the usual checks for gradient masking."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from shortcutlab import plots
from shortcutlab.attacks import robust_accuracy, targeted_pgd
from shortcutlab.study.cache import MODEL_TITLES
from shortcutlab.study.context import Study
from shortcutlab.study.formatting import count, pct
from shortcutlab.train import predict_logits

TITLE = "Targeted adversarial attack"
# The report's Table 4, one image each: before (class, confidence) -> after (target confidence), steps.
REPORT_EXAMPLES = {"cheater": "3 (64%) -> 3 (90%), 6 steps", "consistency": "7 (100%) -> 3 (92%), 12 steps",
                   "grl": "7 (100%) -> 3 (98%), 8 steps"}


@dataclass(frozen=True)
class AttackSettings:
    """The attack of the report (L_inf PGD, eps and alpha in [0, 1] pixel units) and how many sevens it hits."""

    source_digit: int = 7
    target: int = 3
    eps: float = 0.05
    alpha: float = 0.01
    steps: int = 40
    stop_confidence: float = 0.9
    count: int = 256  # hard-test sevens attacked
    eps_curve: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1)
    eps_curve_count: int = 64  # sevens per point of the success-vs-eps curve (alpha eps/4)
    loss: str = "cross-entropy towards the target, L_inf PGD, no random start"
    success: str = "target softmax probability >= stop_confidence (sample frozen once reached)"


SETTINGS = AttackSettings()
QUICK_SETTINGS = replace(SETTINGS, count=64, eps_curve_count=32)  # the embedded hard test has about 100 sevens


@dataclass(frozen=True)
class RobustnessSettings:
    """Untargeted L_inf PGD on the first ``count`` hard-test images, each budget of ``eps_grid`` attacked on its own
    (``restarts`` random starts, ``steps`` steps of 2.5 eps / steps); reported as AutoAttack does: clean accuracy,
    robust accuracy per eps, success rate on the images first classified correctly. Gradient-masking checks:
    accuracy never rises with eps; and, with the full curves, ``check_steps`` steps at ``check_eps`` never leave more
    images correct than ``steps`` steps do, and accuracy at ``masking_eps`` is at most ``masking_floor``."""

    eps_grid: tuple[float, ...] = (0.0, 0.02, 0.05)
    steps: int = 20
    restarts: int = 1  # AutoAttack's standard APGD runs one; the full curves run two
    count: int = 500  # +-2 points; the full curves of five models take about 140 s on full MNIST on 2 CPU cores
    check_eps: tuple[float, ...] = ()
    check_steps: int = 50
    masking_eps: float = 0.3
    masking_floor: float = 0.01
    seed: int = 0


ROBUSTNESS = RobustnessSettings()  # three budgets by default; --full-curves: FULL_CURVES
FULL_CURVES = replace(ROBUSTNESS, eps_grid=(0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3), restarts=2, check_eps=(0.05,))
QUICK = {"count": 200, "steps": 10, "restarts": 1, "check_steps": 25}


def robustness_settings(quick: bool, full_curves: bool) -> RobustnessSettings:
    """The robustness settings of a run: three budgets or the full curve, smaller with --quick."""
    settings = FULL_CURVES if full_curves else ROBUSTNESS
    return replace(settings, **QUICK) if quick else settings


def robustness_entry(model, images: torch.Tensor, labels: torch.Tensor, settings: RobustnessSettings) -> dict:
    """One model's robustness curve: clean and robust accuracy per eps, success rate on the initially correct
    images, the longer attack at ``check_eps``, and any sign of gradient masking (``warnings``)."""
    def attack(eps: float, steps: int) -> torch.Tensor:
        # The same seed for every budget: each eps is its own attack, never derived from another eps's result.
        return robust_accuracy(model, images, labels, eps, steps=steps, restarts=settings.restarts,
                               generator=torch.Generator().manual_seed(settings.seed))

    clean = attack(0.0, settings.steps)
    robust = [attack(eps, settings.steps) for eps in settings.eps_grid]
    accuracy = [round(float(r.float().mean()), 4) for r in robust]
    initially_correct = max(int(clean.sum()), 1)
    success = [round(float((clean & ~r).sum()) / initially_correct, 4) for r in robust]
    longer = {str(eps): round(float(attack(eps, settings.check_steps).float().mean()), 4) for eps in settings.check_eps}
    warnings = []
    if settings.eps_grid[-1] >= settings.masking_eps and accuracy[-1] > settings.masking_floor:
        warnings.append(f"robust accuracy {pct(accuracy[-1])} at eps {settings.eps_grid[-1]} (above "
                        f"{pct(settings.masking_floor)}): the attack does not drive accuracy to 0")
    for low, high, a, b in zip(settings.eps_grid, settings.eps_grid[1:], accuracy, accuracy[1:]):
        if b > a:
            warnings.append(f"robust accuracy rises from {pct(a)} at eps {low} to {pct(b)} at eps {high}")
    for eps, value in longer.items():
        shorter = accuracy[settings.eps_grid.index(float(eps))]
        if value > shorter:
            warnings.append(f"{settings.check_steps} steps leave {pct(value)} correct at eps {eps}, more than "
                            f"{settings.steps} steps ({pct(shorter)})")
    return {"clean_accuracy": round(float(clean.float().mean()), 4), "robust_accuracy": accuracy,
            "success_rate_on_correct": success, "check_steps_accuracy": longer, "warnings": warnings}


def run_robustness(study: Study) -> None:
    """Robustness of every model of the run (controls included) on the hard test; results["robustness"], a figure."""
    settings = robustness_settings(study.config.quick, study.config.full_curves)
    images, labels, _ = study.split("hard_test").tensors()
    images, labels = images[:settings.count], labels[:settings.count]
    by_model = {name: robustness_entry(study.model(name), images, labels, settings) for name in study.model_names}
    study.results["robustness"] = {**asdict(settings), "eps_grid": list(settings.eps_grid),
                                   "check_eps": list(settings.check_eps), "count": len(images), "models": by_model}
    study.figure("task5_robust_accuracy", plots.curves(
        {MODEL_TITLES[n]: (list(settings.eps_grid), e["robust_accuracy"]) for n, e in by_model.items()},
        "eps (L_inf, [0, 1] scale)", "robust accuracy (hard test)",
        f"untargeted PGD, {settings.steps} steps, {settings.restarts} restart(s)"))


def attack_model(model, sevens: torch.Tensor, settings: AttackSettings) -> tuple[dict, object, list[float]]:
    """One model's results entry, its AttackResult on all sevens, and its success-by-budget curve."""
    targets = torch.full((len(sevens),), settings.target)
    result = targeted_pgd(model, sevens, targets, eps=settings.eps, alpha=settings.alpha, steps=settings.steps,
                          stop_confidence=settings.stop_confidence)
    succeeded = result.steps[result.success].float()
    hits = (result.steps >= 0) & result.success
    curve = [round(float((hits & (result.steps <= b)).float().mean()), 4) for b in range(settings.steps + 1)]
    subset = slice(0, settings.eps_curve_count)
    eps_rates = [round(float(targeted_pgd(model, sevens[subset], targets[subset], eps=eps, alpha=eps / 4,
                                          steps=settings.steps, stop_confidence=settings.stop_confidence)
                             .success.float().mean()), 4) for eps in settings.eps_curve]
    before = predict_logits(model, sevens[:1]).softmax(1)[0]
    entry = {"success_rate": round(float(result.success.float().mean()), 4),
             "median_steps": round(float(succeeded.median()), 1) if len(succeeded) else None,
             "p90_steps": round(float(succeeded.quantile(0.9)), 1) if len(succeeded) else None,
             "mean_target_confidence": round(float(result.confidence.mean()), 4),
             "max_linf": round(float((result.images - sevens.to(result.images.device)).abs().amax()), 5),
             "success_by_budget": curve,
             "success_by_eps": eps_rates,
             "example": {"before": [int(before.argmax()), round(float(before.max()), 4)],
                         "after_target_confidence": round(float(result.confidence[0]), 4),
                         "steps": int(result.steps[0])}}
    return entry, result, curve


def run(study: Study) -> None:
    """Success rate, steps to success, success vs step budget and vs eps, and one example per model."""
    settings = QUICK_SETTINGS if study.config.quick else SETTINGS
    images, labels, _ = study.split("hard_test").tensors()
    sevens = images[labels == settings.source_digit][:settings.count]
    budgets = list(range(settings.steps + 1))
    by_model, budget_curves, eps_curves, examples = {}, {}, {}, {}
    for name in (n for n in study.model_names if n != "augmentation"):  # the report's models and the robust one
        entry, result, curve = attack_model(study.model(name), sevens, settings)
        by_model[name] = entry
        budget_curves[name] = (budgets, curve)
        eps_curves[name] = (list(settings.eps_curve), entry["success_by_eps"])
        before_class, before_confidence = entry["example"]["before"]
        examples[name] = (sevens[0].cpu(), result.images[0].cpu(),
                          f"{before_class} ({before_confidence:.0%}) -> {settings.target} "
                          f"({entry['example']['after_target_confidence']:.0%}), {entry['example']['steps']} steps")
    study.results["attack"] = {**asdict(settings), "eps_curve": list(settings.eps_curve), "count": len(sevens),
                               "models": by_model}
    study.figure("task5_attack_example", plots.attack_figure(examples))
    study.figure("task5_success_vs_budget", plots.curves(budget_curves, "PGD step budget",
                                                         f"success rate (target prob >= {settings.stop_confidence})",
                                                         f"{settings.source_digit} -> {settings.target}, "
                                                         f"eps {settings.eps}"))
    study.figure("task5_success_vs_eps", plots.curves(eps_curves, "eps (L_inf)", "success rate",
                                                      f"{settings.source_digit} -> {settings.target}, "
                                                      f"{settings.steps} steps, alpha eps/4"))
    run_robustness(study)


def report(results: dict) -> list[str]:
    """The Task 5 section of report.md (empty when the task did not run)."""
    attack = results.get("attack")
    if not attack:
        return []
    lines = ["## Task 5: Targeted PGD attack", "",
             f"{attack['count']} hard-test sevens attacked towards {attack['target']}: eps {attack['eps']}, alpha "
             f"{attack['alpha']}, up to {attack['steps']} steps; loss: {attack['loss']}; success: "
             f"{attack['success']} ({attack['stop_confidence']}).", "",
             "| Model | Report (one image) | Success rate | Median steps | 90th pct steps | Mean target conf. |",
             "|---|---|---|---|---|---|"]
    for name, e in attack["models"].items():
        lines.append(f"| {MODEL_TITLES[name]} | {REPORT_EXAMPLES.get(name, '-')} | {pct(e['success_rate'])} | "
                     f"{count(e['median_steps'])} | {count(e['p90_steps'])} | {pct(e['mean_target_confidence'])} |")
    lines += ["", "Success rate by eps (" + ", ".join(str(e) for e in attack["eps_curve"]) + "): " +
              "; ".join(f"{MODEL_TITLES[n]} " + " / ".join(pct(v) for v in e["success_by_eps"])
                        for n, e in attack["models"].items())]
    return lines + [""] + robustness_report(results.get("robustness"))


def robustness_report(robustness: dict | None) -> list[str]:
    """The robustness-curve part of the Task 5 section (empty when it did not run)."""
    if not robustness:
        return []
    grid = robustness["eps_grid"]
    lines = ["### Robustness: untargeted PGD across budgets", "",
             f"The first {robustness['count']} hard-test images, each eps attacked on its own: "
             f"{robustness['restarts']} "
             f"random start(s) of {robustness['steps']} steps of 2.5 eps / steps; an image counts as robust when no "
             "restart changes its (correct) class. Robust accuracy per eps (success rate on the images first "
             "classified correctly in brackets):", "",
             "| Model | " + " | ".join(f"eps {eps:g}" for eps in grid) + " |", "|---|" + "---|" * len(grid)]
    for name, e in robustness["models"].items():
        cells = [pct(a) if eps == 0 else f"{pct(a)} ({pct(s)})"
                 for eps, a, s in zip(grid, e["robust_accuracy"], e["success_rate_on_correct"])]
        lines.append(f"| {MODEL_TITLES[name]} | " + " | ".join(cells) + " |")
    warnings = [f"{MODEL_TITLES[n]}: {w}" for n, e in robustness["models"].items() for w in e["warnings"]]
    checks = "accuracy never rising with eps"
    if robustness["check_eps"]:
        checks += (f", {robustness['check_steps']} steps at eps {', '.join(map(str, robustness['check_eps']))} never "
                   f"leaving more images correct than {robustness['steps']}")
    if grid[-1] >= robustness["masking_eps"]:
        checks = f"accuracy at eps {grid[-1]} at most {pct(robustness['masking_floor'])}, " + checks
    if not robustness["check_eps"] or grid[-1] < robustness["masking_eps"]:
        checks += ("; --full-curves adds that more steps never leave more correct and that accuracy reaches 0 by "
                   f"eps {robustness['masking_eps']}")
    lines += ["", f"Gradient-masking checks ({checks}): " + ("all hold." if not warnings else
                                                            "violated: " + "; ".join(warnings) + ".")]
    return lines + [""]
