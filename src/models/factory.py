"""Build estimators from config nodes whose `_target_` names a scikit-learn / xgboost class.

Hydra's `_target_` is the registry: an option file points straight at a class, and every other key
is a constructor argument. Keys that configure the project rather than the estimator (listed in
PROJECT_KEYS) are stripped first. Kept free of Hydra so stage code never depends on it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from src.errors import UserError

# The config groups whose options are estimators, in pipeline order (also the run name's order).
GROUPS = ("reducer", "clusterer", "classifier")
PROJECT_KEYS = frozenset({"test_size"})
OPTIONAL_EXTRAS = {"umap": "umap"}  # importable root module -> pyproject extra that installs it


def build_estimator(group: str, spec: Mapping[str, Any]) -> Any:
    """Instantiate the estimator described by config group `group` (e.g. 'clusterer')."""
    cls = estimator_class(group, spec.get("_target_"))
    params = {k: v for k, v in spec.items() if k != "_target_" and k not in PROJECT_KEYS}
    try:
        return cls(**params)
    except TypeError as err:
        raise UserError(f"{group}: {cls.__name__} rejected the settings {params}: {err}") from err


def estimator_class(group: str, target: object) -> type:
    """The class an option's `_target_` names; a missing optional package names its extra."""
    if not target:
        raise UserError(f"{group}: the option has no _target_ naming an estimator class")
    module_name, _, class_name = str(target).rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        root = (err.name or module_name).split(".")[0]
        if root in OPTIONAL_EXTRAS:
            raise UserError(
                f"{group}={root} needs the optional package '{root}', which is not installed; "
                f"install it with: pip install -e '.[{OPTIONAL_EXTRAS[root]}]'"
            ) from err
        raise UserError(f"{group}._target_={target}: module '{module_name}' not found") from err
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UserError(f"{group}._target_={target}: '{class_name}' not found in {module_name}")
    return cls


def can_label_new_points(estimator: Any) -> bool:
    """True for inductive estimators (a fitted one can transform / predict unseen customers).

    t-SNE has no `transform`; agglomerative, DBSCAN and HDBSCAN have no `predict`: they only label
    the points they were fitted on.
    """
    return hasattr(estimator, "transform") or hasattr(estimator, "predict")
