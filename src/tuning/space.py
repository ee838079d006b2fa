"""Search spaces declared in config (conf/search/<group>/<option>.yaml) -> Optuna suggestions.

A trial first picks one option per group among those the sweep allows (the estimator groups and
the feature set, `sweep.features`: files of conf/features/), then samples only that option's
parameters (conditional sampling). Parameter names carry the option
(`clusterer.gmm.n_components`) so Optuna never mixes two estimators' parameters; the returned
values use the run config's keys (`clusterer.n_components`).

With `sweep.k` set, a clusterer's number of clusters (`K_KEYS`) is not sampled: every trial uses
exactly k (`src.tuning.trial.compose_run_config` sets it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf

from src.errors import UserError
from src.features.value import needs_value
from src.models.factory import GROUPS

PARAM_TYPES = ("int", "float", "categorical")
# scikit-learn's names for a clusterer's number of clusters (KMeans, agglomerative, Birch: n_clusters;
# GaussianMixture: n_components). DBSCAN and HDBSCAN have none: they find their own.
K_KEYS = ("n_clusters", "n_components")

FEATURES = "features"  # the config group of feature sets, swept by `sweep.features`
FEATURE_SETS_DIR = Path(__file__).resolve().parents[2] / "conf" / FEATURES


@dataclass(frozen=True)
class Suggestion:
    picked: dict[str, str]  # group -> option, e.g. {"features": "rfm", "reducer": "pca", ...}
    params: dict[str, Any]  # run config key -> sampled value, e.g. "clusterer.n_components" -> 5


def allowed_options(sweep: Mapping[str, Any], search: Mapping[str, Any]) -> dict[str, list[str]]:
    """The options each group may pick, checked against the declared search spaces."""
    allowed = {}
    for group in GROUPS:
        key = f"{group}s"
        options = list(sweep[key] or [])
        if not options:
            raise UserError(f"sweep.{key} is empty: list at least one {group} option")
        unknown = [name for name in options if name not in search[group]]
        if unknown:
            raise UserError(
                f"sweep.{key}: unknown option(s) {unknown}; "
                f"known: {sorted(search[group])} (conf/search/{group}/)"
            )
        allowed[group] = options
    allowed[FEATURES] = feature_sets(sweep[FEATURES])
    return allowed


def sweep_k(sweep: Mapping[str, Any]) -> int | None:
    """`sweep.k`: the number of segments every trial makes, or None (free: sampled)."""
    k = sweep.get("k")
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise UserError(f"sweep.k={k}: the number of segments, an integer of at least 2, or null")
    return k


def k_key(clusterer: Mapping[str, Any]) -> str | None:
    """The clusterer setting that is its number of clusters, or None (DBSCAN, HDBSCAN)."""
    return next((key for key in K_KEYS if key in clusterer), None)


def feature_sets(options: Sequence[str] | None) -> list[str]:
    """`sweep.features`, checked against the feature sets in conf/features/."""
    options = [str(name) for name in options or []]
    if not options:
        raise UserError("sweep.features is empty: list at least one feature set, e.g. [rfm]")
    known = sorted(path.stem for path in FEATURE_SETS_DIR.glob("*.yaml"))
    unknown = [name for name in options if name not in known]
    if unknown:
        raise UserError(
            f"sweep.features: unknown feature set(s) {unknown}; known: {known} (conf/features/)"
        )
    return options


def require_value_fit(feature_sets: Sequence[str], value_error: str | None) -> None:
    """UserError when a swept feature set needs the lifetime-value models and the data could not
    fit them (`value_error` says why): every trial picking it would fail."""
    if value_error is None:
        return
    for name in feature_sets:
        columns = OmegaConf.load(FEATURE_SETS_DIR / f"{name}.yaml").get("columns") or []
        if needs_value(columns):
            raise UserError(
                f"sweep.features lists {name}: features={name} needs the lifetime-value models "
                f"which this store cannot identify ({value_error}); "
                f"leave {name} out of sweep.features"
            )


def suggest(
    trial: optuna.Trial,
    allowed: Mapping[str, Sequence[str]],
    search: Mapping[str, Any],
    k: int | None = None,
) -> Suggestion:
    """Pick the options and sample their parameters; with `k` set the clusterer's number of
    clusters is left out (it is fixed, not searched)."""
    picked = {group: trial.suggest_categorical(group, list(allowed[group])) for group in GROUPS}
    params: dict[str, Any] = {}
    for group in GROUPS:
        option = picked[group]
        for name, spec in (search[group][option] or {}).items():
            if k is not None and group == "clusterer" and name in K_KEYS:
                continue
            params[f"{group}.{name}"] = _suggest_one(trial, f"{group}.{option}.{name}", spec)
    picked[FEATURES] = trial.suggest_categorical(FEATURES, list(allowed[FEATURES]))
    return Suggestion(picked, params)


def _suggest_one(trial: optuna.Trial, name: str, spec: Mapping[str, Any]) -> Any:
    kind = spec.get("type")
    try:
        if kind == "int":
            return trial.suggest_int(
                name,
                int(spec["low"]),
                int(spec["high"]),
                step=int(spec.get("step", 1)),
                log=bool(spec.get("log", False)),
            )
        if kind == "float":
            step = spec.get("step")
            return trial.suggest_float(
                name,
                float(spec["low"]),
                float(spec["high"]),
                step=float(step) if step is not None else None,
                log=bool(spec.get("log", False)),
            )
        if kind == "categorical":
            return trial.suggest_categorical(name, list(spec["choices"]))
    except KeyError as err:
        raise UserError(f"search space {name}: missing key {err}") from err
    except ValueError as err:
        raise UserError(f"search space {name}: {err}") from err
    raise UserError(f"search space {name}: type must be one of {PARAM_TYPES}, got {kind!r}")
