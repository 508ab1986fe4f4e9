"""What a run will cost before it starts: which models it trains (those not already cached) and about how long the
training and the measurements take on 2 CPU cores, from the times measured by ``benchmarks/bench_study.py``."""
from __future__ import annotations

from dataclasses import dataclass, replace

from shortcutlab.study.cache import (MODEL_SPECS, REFERENCE_MODELS, SMALL_TRAIN, SWEEP_MODELS, is_cached, spec_for,
                                     sweep_rate)
from shortcutlab.study.context import Study, StudyConfig

FULL_TRAIN = 54_000  # MNIST's train split less the 10% val
# Seconds to train each model on full MNIST (54,000 train images) on 2 CPU cores (AMD EPYC), nothing else running.
TRAIN_SECONDS = {"cheater": 3.8, "consistency": 36.5, "grl": 20.3, "augmentation": 19.5, "adversarial": 77.0,
                 "erm": 20.0, "unbiased": 20.8, "grayscale": 22.4, "grl_no_augmentation": 19.0, "grl_weight_0.1": 20.3,
                 "grl_weight_2": 20.3, "grl_no_augmentation_weight_0.1": 19.0, "grl_no_augmentation_weight_2": 19.0}
# Seconds each step measures for (models already trained), on full MNIST and on a small (embedded) split.
MEASURE_SECONDS = {"full": {"0": 2.5, "1": 4.0, "2": 2.6, "3": 6.3, "4": 12.5, "5": 25.0, "6": 12.0, "sweep": 2.0},
                   "small": {"0": 1.0, "1": 1.0, "2": 2.0, "3": 3.0, "4": 3.0, "5": 10.0, "6": 5.0, "sweep": 0.5}}
FULL_CURVES_FACTOR = 3.0  # seven budgets and the 50-step check instead of three budgets


@dataclass(frozen=True)
class Estimate:
    """Models a run trains and reuses, and its expected seconds on 2 CPU cores."""

    to_train: tuple[tuple[str, float | None], ...]
    cached: tuple[tuple[str, float | None], ...]
    seconds: float

    def text(self) -> str:
        minutes = self.seconds / 60
        duration = f"{self.seconds:.0f} s" if self.seconds < 120 else f"{minutes:.0f} min"
        return (f"expected time: about {duration} on 2 CPU cores ({len(self.to_train)} models to train, "
                f"{len(self.cached)} cached; a GPU is faster)")


def planned_models(study: Study) -> list[tuple[str, float | None]]:
    """The (model, rate) pairs a run trains or loads, in order, each once (None: the model's own rate)."""
    config = study.config
    planned: list[tuple[str, float | None]] = []
    if any(task != 0 for task in config.tasks):
        planned += [(name, None) for name in study.model_names]
    if 4 in config.tasks:
        planned += [(name, None) for name in study.table_names]
    if config.dominant_rates:
        planned += [(name, sweep_rate(name, rate)) for rate in config.dominant_rates for name in SWEEP_MODELS]
        planned += [(name, None) for name in REFERENCE_MODELS]
    return list(dict.fromkeys(planned))


def _train_seconds(name: str, rate: float | None, train_size: int) -> float:
    """TRAIN_SECONDS scaled by the samples this spec trains on against its full-MNIST spec's."""
    def samples(spec, size: int) -> int:
        return min(spec.train_limit or size, size) * spec.epochs

    return TRAIN_SECONDS[name] * samples(spec_for(name, train_size, rate), train_size) / samples(
        MODEL_SPECS[name], FULL_TRAIN)


def estimate(config: StudyConfig, seeds: int = 1) -> Estimate:
    """The cost of ``run_study(config)`` (``seeds`` > 1: of ``run_seeds`` over that many seeds)."""
    to_train, cached, seconds = [], [], 0.0
    for seed in range(config.seed, config.seed + seeds):
        seed_config = config if seeds == 1 else replace(config, seed=seed, out=config.out / "seeds" / f"seed-{seed}")
        study = Study(seed_config)
        train_size = len(study.split("train"))
        for name, rate in planned_models(study):
            if not config.force and is_cached(name, study.split, study.out / "models", seed=seed, rate=rate):
                cached.append((name, rate))
            else:
                to_train.append((name, rate))
                seconds += _train_seconds(name, rate, train_size)
        measure = MEASURE_SECONDS["small" if train_size < SMALL_TRAIN else "full"]
        seconds += sum(measure[str(t)] for t in config.tasks)
        if 5 in config.tasks and config.full_curves:
            seconds += measure["5"] * (FULL_CURVES_FACTOR - 1)
        seconds += measure["sweep"] * len(SWEEP_MODELS) * len(config.dominant_rates)
    return Estimate(tuple(to_train), tuple(cached), seconds)
