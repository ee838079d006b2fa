"""The model registry: versions of `customer-segmentation`, the `candidate` and `production`
aliases (MLflow 3 aliases, never the deprecated stages)."""

from __future__ import annotations

import contextlib
import getpass
import io
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from src.errors import UserError
from src.retry import retry

log = logging.getLogger(__name__)
CANDIDATE = "candidate"
PRODUCTION = "production"


def register_candidate(
    model_uri: str, model_name: str, tags: Mapping[str, str], once_key: Mapping[str, str]
) -> ModelVersion:
    """Register `model_uri` as a new version tagged `tags` and move `candidate` to it.

    `once_key` (e.g. study and trial) identifies the answer: when a version with the same key
    exists already, it is reused. Two workers finishing at the same moment may both register;
    the later version then deletes itself, so the registry holds the answer once. A store that
    is unreachable for a while is waited for (a retry finds a version that went through by its
    key).
    """
    return retry(lambda: _register(model_uri, model_name, tags, once_key), "registering the model")


def register_version(
    model_uri: str, model_name: str, tags: Mapping[str, str] | None = None
) -> ModelVersion:
    """A new version of `model_name`. MLflow prints "Successfully registered model" and "Created
    version" on stderr itself; our commands say which version they registered, once."""
    with contextlib.redirect_stderr(io.StringIO()):
        return mlflow.register_model(model_uri, model_name, tags=tags)


def _register(
    model_uri: str, model_name: str, tags: Mapping[str, str], once_key: Mapping[str, str]
) -> ModelVersion:
    client = MlflowClient()
    existing = _versions_with(client, model_name, once_key)
    if existing:
        version = existing[0]
        log.info("%s version %s already holds this answer", model_name, version.version)
    else:
        version = register_version(model_uri, model_name, dict(tags) | dict(once_key))
        twins = _versions_with(client, model_name, once_key)
        if twins and twins[0].version != version.version:
            client.delete_model_version(model_name, version.version)
            version = twins[0]
        else:  # described once: a promotion appends to the description later
            describe(client, model_name, str(version.version))
    client.set_registered_model_alias(model_name, CANDIDATE, version.version)
    return version


MODEL_DESCRIPTION = (
    "Assigns an online store's customers to marketing segments. It computes each customer's "
    "recency, frequency and monetary value (RFM) from their sale lines and a trained classifier "
    "assigns the segment found by the clustering it was trained on.\n\n"
    "**Input**: a transactions table in the training export's schema (one row per sale line; "
    "the columns are in the signature). Params: `snapshot_date` (ISO date recency is measured "
    "to, default the day after the last line), `columns` (JSON role -> column for other "
    "headers).\n\n"
    "**Output**: one row per customer: `customer_id`, `segment_id`, `segment_name`."
)
VERSION_METRICS = (
    "cluster/silhouette",
    "cluster/n_clusters",
    "classifier/accuracy",
    "classifier/f1_macro",
    "data/customers",
)


def describe(client: MlflowClient, name: str, version: str) -> None:
    """Describe the registered model (what it does, input, output; a description a person wrote
    is kept) and the version: its source run, the data and the run's headline metrics."""
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=MODEL_DESCRIPTION)
    held = client.get_model_version(name, version)
    if not held.run_id:
        return
    run = client.get_run(held.run_id)
    metrics = ", ".join(
        f"{m} {run.data.metrics[m]:.4g}" for m in VERSION_METRICS if m in run.data.metrics
    )
    text = (
        f"From run `{run.info.run_name}` ({held.run_id}); data digest "
        f"{run.data.tags.get('data_digest', 'unknown')}.\n\n{metrics}."
    )
    client.update_model_version(name, version, description=text)


def _versions_with(client: MlflowClient, name: str, key: Mapping[str, str]) -> list[ModelVersion]:
    """Versions of `name` carrying every tag in `key`, oldest first."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except mlflow.exceptions.MlflowException:
        return []
    matching = [v for v in versions if all(v.tags.get(k) == str(val) for k, val in key.items())]
    return sorted(matching, key=lambda v: int(v.version))


# --------------------------------------------------------------------------------------------
# Promotion: who holds `production`, moving it, and the history that makes rollback possible
# --------------------------------------------------------------------------------------------

# Registered-model tag: JSON list of the versions that held `production`, oldest first, the
# current holder last. Rollback walks it backwards, so several rollbacks in a row work.
HISTORY_TAG = "production_history"
HISTORY_LIMIT = 100
VERSION_COLUMNS = (
    "version",
    "aliases",
    "combination",
    "objective",
    "objective_value",
    "f1_macro",
    "run_id",
    "created",
)


def sqlite_store_missing(uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI when it does not exist (opening it would
    silently create an empty store in the working directory), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(unquote(uri.removeprefix("sqlite:///")).split("?")[0])
    return None if path.exists() else path


def require_model(client: MlflowClient, name: str) -> RegisteredModel:
    try:
        return client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        raise UserError(
            f"no registered model '{name}' in the tracking store {mlflow.get_tracking_uri()}; "
            "register one with `python -m src.sweep` or `python -m src.run tracking.register=true` "
            "(or point tracking.uri / MLFLOW_TRACKING_URI at the right store)"
        ) from None


def all_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Every version of `name`, newest first."""
    versions = client.search_model_versions(f"name = '{name}'")
    return sorted(versions, key=lambda v: int(v.version), reverse=True)


def aliases_by_version(model: RegisteredModel) -> dict[str, list[str]]:
    """{"3": ["candidate", "production"], ...} from the registered model's alias map."""
    held: dict[str, list[str]] = {}
    for alias, version in sorted((model.aliases or {}).items()):
        held.setdefault(str(version), []).append(alias)
    return held


def version_table(client: MlflowClient, name: str) -> pd.DataFrame:
    """One row per version (newest first) with the columns of VERSION_COLUMNS."""
    model = require_model(client, name)
    held = aliases_by_version(model)
    rows = [
        {
            "version": int(v.version),
            "aliases": ",".join(held.get(str(v.version), [])),
            "combination": v.tags.get("combination", ""),
            "objective": v.tags.get("objective", ""),
            "objective_value": v.tags.get("objective_value", ""),
            "f1_macro": v.tags.get("f1_macro", ""),
            "run_id": v.run_id or v.tags.get("run_id", ""),
            "created": _utc(v.creation_timestamp),
        }
        for v in all_versions(client, name)
    ]
    return pd.DataFrame(rows, columns=list(VERSION_COLUMNS))


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    model = require_model(client, name)
    version = (model.aliases or {}).get(alias)
    return None if version is None else client.get_model_version(name, str(version))


def resolve_version(client: MlflowClient, name: str, version: str | int | None) -> ModelVersion:
    """`version` as a number, or an alias name (default: `candidate`), as a ModelVersion."""
    model = require_model(client, name)
    wanted = CANDIDATE if version is None or str(version).strip() == "" else str(version).strip()
    existing = ", ".join(str(v.version) for v in reversed(all_versions(client, name))) or "none"
    if not wanted.isdigit():
        number = (model.aliases or {}).get(wanted)
        if number is None:
            hint = (
                "run a sweep (`python -m src.sweep`) to set it, or pass version=N"
                if wanted == CANDIDATE
                else "pass version=N or an alias that exists"
            )
            raise UserError(
                f"no version of '{name}' has alias '{wanted}' (versions: {existing}); {hint}"
            )
        wanted = str(number)
    try:
        return client.get_model_version(name, wanted)
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        raise UserError(
            f"version={wanted}: '{name}' has no such version (versions: {existing})"
        ) from None


def production_history(model: RegisteredModel) -> list[str]:
    raw = (model.tags or {}).get(HISTORY_TAG)
    if not raw:
        return []
    try:
        return [str(v) for v in json.loads(raw)]
    except (ValueError, TypeError):
        log.warning("ignoring unreadable %s tag on %s: %r", HISTORY_TAG, model.name, raw)
        return []


def move_production(
    client: MlflowClient,
    name: str,
    version: str,
    reason: str | None = None,
    forced: bool = False,
    now: datetime | None = None,
) -> str | None:
    """Point `production` at `version`, record it in the history and on the version's tags;
    returns the version that held `production` before (None if none did)."""
    model = require_model(client, name)
    current = (model.aliases or {}).get(PRODUCTION)
    previous = None if current is None else str(current)
    history = production_history(model)
    if previous is not None and (not history or history[-1] != previous):
        history.append(previous)  # promoted outside this tool (e.g. in the MLflow UI)
    history.append(str(version))
    client.set_registered_model_alias(name, PRODUCTION, str(version))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_LIMIT:]))
    _tag_promotion(client, name, str(version), previous, reason, forced, now)
    return previous


def rollback_production(
    client: MlflowClient, name: str, reason: str | None = None, now: datetime | None = None
) -> tuple[str, str]:
    """Move `production` back to the version that held it before the current one; returns
    (from_version, to_version). Versions deleted since are skipped."""
    model = require_model(client, name)
    current = (model.aliases or {}).get(PRODUCTION)
    if current is None:
        raise UserError(f"no version of '{name}' has alias '{PRODUCTION}'; nothing to roll back")
    current = str(current)
    history = production_history(model)
    if history and history[-1] == current:
        history.pop()
    existing = {str(v.version) for v in all_versions(client, name)}
    while history and (history[-1] == current or history[-1] not in existing):
        history.pop()
    if not history:
        raise UserError(
            f"no earlier production version of '{name}' is recorded (production is version "
            f"{current}); promote a version explicitly: python -m src.promote version=N"
        )
    target = history[-1]
    client.set_registered_model_alias(name, PRODUCTION, target)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    _tag_promotion(
        client, name, target, current, reason or f"rollback from version {current}", False, now
    )
    return current, target


def _tag_promotion(
    client: MlflowClient,
    name: str,
    version: str,
    previous: str | None,
    reason: str | None,
    forced: bool,
    now: datetime | None,
) -> None:
    stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    who = _user()
    tags = {"promoted_at": stamp, "promoted_from": previous or "none", "promoted_by": who}
    if reason:
        tags["promotion_reason"] = reason
    if forced:
        tags["promotion_forced"] = "true"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    stale = {"promotion_reason", "promotion_forced"} - tags.keys()
    held = client.get_model_version(name, version).tags
    for key in stale & held.keys():  # from an earlier promotion of the same version
        client.delete_model_version_tag(name, version, key)
    line = (
        f"Promoted to production {stamp} by {who} (from version {previous or 'none'})"
        + (", forced" if forced else "")
        + (f": {reason}" if reason else "")
    )
    before = client.get_model_version(name, version).description or ""
    client.update_model_version(name, version, description=f"{before}\n\n{line}".strip())


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return "unknown"


def _utc(millis: int | None) -> str:
    if not millis:
        return ""
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%d %H:%M")
