"""`python -m src.promote [version=N] [force=true] [reason=...] [rollback=true]`: move the
`production` alias of the registered model, or list its versions.

`production` is what `src.predict` and `mlflow models serve -m models:/<name>@production` use, so
moving it (here or in the MLflow UI) is the whole deployment. A promotion is refused when the
version is worse than production on the sweep objective the two were ranked on, unless forced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import hydra
from omegaconf import DictConfig

from src.cli import exit_on_user_error, run_command
from src.errors import UserError
from src.tuning.objective import direction


@dataclass(frozen=True)
class Comparison:
    """How a version compares with production; `refusal` is None when promotion may proceed."""

    objective: str | None
    new_value: float | None
    current_value: float | None
    refusal: str | None

    def describe(self, new: str, current: str) -> str:
        if self.objective is None or self.new_value is None or self.current_value is None:
            return ""
        better = "lower" if direction(self.objective) == "minimize" else "higher"
        return (
            f"{self.objective} ({better} is better): {self.new_value:.6g} (version {new}) vs "
            f"{self.current_value:.6g} (version {current})"
        )


def objective_score(
    tags: Mapping[str, str], run_metrics: Mapping[str, float], objective: str
) -> float | None:
    """A version's score on `objective`: its sweep tag when it was ranked on that objective, else
    (a version registered by a single run, no objective tag) the metric its run logged."""
    if tags.get("objective") == objective:
        return _number(tags.get("objective_value"))
    if not tags.get("objective") and objective in run_metrics:
        return _number(run_metrics[objective])
    return None


def compare(
    new: str,
    new_tags: Mapping[str, str],
    current: str,
    current_tags: Mapping[str, str],
    current_metrics: Mapping[str, float],
) -> Comparison:
    """Compare version `new` with production version `current` on `new`'s sweep objective."""
    objective = new_tags.get("objective") or None
    force_hint = "pass force=true to promote it anyway"
    if objective is None:
        return Comparison(None, None, None, (
            f"version {new} records no sweep objective (it was not registered by a sweep), so it "
            f"cannot be compared with production version {current}; {force_hint}"
        ))  # fmt: skip
    other = current_tags.get("objective")
    if other and other != objective:
        return Comparison(objective, None, None, (
            f"version {new} was ranked on {objective} but production version {current} on "
            f"{other}: their scores are not comparable; {force_hint}"
        ))  # fmt: skip
    new_value = objective_score(new_tags, {}, objective)
    current_value = objective_score(current_tags, current_metrics, objective)
    if new_value is None or current_value is None:
        missing = new if new_value is None else current
        return Comparison(objective, new_value, current_value, (
            f"version {missing} has no value of {objective} to compare; {force_hint}"
        ))  # fmt: skip
    minimise = direction(objective) == "minimize"
    worse = new_value > current_value if minimise else new_value < current_value
    refusal = None
    if worse:
        better = "lower" if minimise else "higher"
        refusal = (
            f"version {new} is worse than production version {current} on {objective} "
            f"({better} is better): {new_value:.6g} (version {new}) vs {current_value:.6g} "
            f"(version {current}); {force_hint}"
        )
    return Comparison(objective, new_value, current_value, refusal)


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _text(value: object) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value)


# --------------------------------------------------------------------------------------------
# Commands (the MLflow side lives in src.tracking.registry)
# --------------------------------------------------------------------------------------------


def list_versions(name: str) -> None:
    import mlflow
    from mlflow import MlflowClient

    from src.tracking import registry

    client = MlflowClient()
    table = registry.version_table(client, name)
    if table.empty:
        print(f"'{name}' has no versions")
        return
    print(f"versions of '{name}' ({mlflow.get_tracking_uri()}):\n")
    print(table.fillna("").to_string(index=False))
    holders = registry.aliases_by_version(registry.require_model(client, name))
    by_alias = {alias: v for v, aliases in holders.items() for alias in aliases}
    production = by_alias.get(registry.PRODUCTION)
    print()
    print(f"production: {'version ' + production if production else 'none'}")
    if by_alias.get(registry.CANDIDATE):
        print(f"candidate:  version {by_alias[registry.CANDIDATE]}")
    print("promote with: python -m src.promote version=N  (or version=candidate)")


def promote(name: str, version: object, force: bool, reason: str | None) -> None:
    from mlflow import MlflowClient

    from src.tracking import registry

    client = MlflowClient()
    target = registry.resolve_version(client, name, _text(version))
    number = str(target.version)
    current = registry.version_by_alias(client, name, registry.PRODUCTION)
    if current is not None and str(current.version) == number:
        print(f"version {number} of '{name}' is already in production; nothing to do")
        return
    comparison = None
    if current is not None:
        metrics = _run_metrics(client, current.run_id)
        comparison = compare(number, target.tags, str(current.version), current.tags, metrics)
        if comparison.refusal and not force:
            raise UserError(f"not promoted: {comparison.refusal}")
    forced = bool(comparison and comparison.refusal)
    previous = registry.move_production(client, name, number, reason=reason, forced=forced)
    was = f"version {previous}" if previous else "none"
    print(f"production: '{name}' version {number} (was {was})")
    if comparison is not None:
        line = comparison.describe(number, str(previous))
        if line:
            print(f"  {line}")
        if forced:
            print(f"  forced: {comparison.refusal.split('; pass force')[0]}")
    print(
        f"  serving models:/{name}@{registry.PRODUCTION}; undo: python -m src.promote rollback=true"
    )


def rollback(name: str, reason: str | None) -> None:
    from mlflow import MlflowClient

    from src.tracking import registry

    client = MlflowClient()
    was, now = registry.rollback_production(client, name, reason=reason)
    print(f"production: '{name}' version {now} (rolled back from version {was})")


def _run_metrics(client: object, run_id: str | None) -> dict[str, float]:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return {}
    try:
        return dict(client.get_run(run_id).data.metrics)  # type: ignore[attr-defined]
    except MlflowException:
        return {}


def execute(cfg: DictConfig) -> None:
    import mlflow

    from src.tracking.registry import sqlite_store_missing

    uri = str(cfg.tracking.uri)
    missing = sqlite_store_missing(uri)
    if missing is not None:
        raise UserError(
            f"tracking.uri={uri}: no tracking store at {missing}; run from the directory that "
            "holds mlflow.db or set tracking.uri / MLFLOW_TRACKING_URI"
        )
    mlflow.set_tracking_uri(uri)
    name = str(cfg.model_name)
    reason = _text(cfg.reason)
    if cfg.rollback:
        if _text(cfg.version) is not None:
            raise UserError("rollback=true and version= exclude each other; pass one of them")
        rollback(name, reason)
    elif _text(cfg.version) is not None or cfg.force or reason:
        promote(name, cfg.version, bool(cfg.force), reason)
    else:
        list_versions(name)


@hydra.main(version_base="1.3", config_path="../conf", config_name="promote")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        execute(cfg)


if __name__ == "__main__":
    run_command(main)
