"""`python -m src.promote`: list, promote (default candidate), refuse when worse, force, rollback,
tags, and every error with its message.

One real model is trained and registered (src.run, tracking.register=true); further versions
reuse it through src.tracking.registry.register_candidate with sweep tags whose objective values
are chosen here, so each test knows which version is better.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from src.errors import UserError
from src.promote import compare, execute
from src.tracking import registry
from tests.conftest import train_and_register

NAME = "customer-segmentation"
ROOT = Path(__file__).resolve().parents[1]


def clean_env() -> dict[str, str]:
    """This process's environment without the MLflow run/experiment another test may have left."""
    leaked = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
    return {k: v for k, v in os.environ.items() if k not in leaked}


@pytest.fixture(scope="module")
def store(tmp_path_factory, make_cfg) -> dict:
    """A tracking store with versions 1 (single run, no sweep tags) and 2, 3, 4 (sweep-tagged):
    v2 silhouette 0.40, v3 silhouette 0.50 (the candidate), v4 davies_bouldin 0.80."""
    tmp = tmp_path_factory.mktemp("promote")
    uri, _ = train_and_register(tmp, make_cfg)
    client = MlflowClient(uri)
    first = client.get_model_version(NAME, "1")
    fakes = [
        ("cluster/silhouette", 0.40),
        ("cluster/silhouette", 0.50),
        ("cluster/davies_bouldin", 0.80),
    ]
    for trial, (objective, value) in enumerate(fakes):
        registry.register_candidate(
            first.source,
            NAME,
            tags={
                "run_id": first.run_id,
                "combination": f"pca-kmeans-xgboost#{trial}",
                "objective": objective,
                "objective_value": str(value),
                "f1_macro": "0.97",
            },
            once_key={"study": "s", "trial": str(trial)},
        )
    assert client.get_registered_model(NAME).aliases[registry.CANDIDATE] == 4  # the last one
    client.set_registered_model_alias(NAME, registry.CANDIDATE, "3")
    silhouette = client.get_run(first.run_id).data.metrics["cluster/silhouette"]
    return {"uri": uri, "tmp": tmp, "silhouette_v1": silhouette}


@pytest.fixture
def client(store, monkeypatch) -> MlflowClient:
    """The store with no production version and no promotion history."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    mlflow.set_tracking_uri(store["uri"])
    client = MlflowClient(store["uri"])
    model = client.get_registered_model(NAME)
    if registry.PRODUCTION in model.aliases:
        client.delete_registered_model_alias(NAME, registry.PRODUCTION)
    if registry.HISTORY_TAG in model.tags:
        client.delete_registered_model_tag(NAME, registry.HISTORY_TAG)
    return client


@pytest.fixture
def promote(store, make_cfg):
    def run(*overrides: str) -> None:
        execute(make_cfg(f"tracking.uri={store['uri']}", *overrides, config_name="promote"))

    return run


def production(client: MlflowClient) -> str | None:
    held = client.get_registered_model(NAME).aliases.get(registry.PRODUCTION)
    return None if held is None else str(held)


def test_list_shows_every_version_with_aliases_and_scores(client, promote, capsys):
    promote("version=3")
    capsys.readouterr()
    promote()
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.split()[:1] == ["version"])
    assert header.split() == list(registry.VERSION_COLUMNS)
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()[:1].isdigit()}
    assert set(rows) == {"1", "2", "3", "4"}
    assert "candidate,production" in rows["3"] and "0.5" in rows["3"]
    assert "cluster/davies_bouldin" in rows["4"] and "0.8" in rows["4"]
    assert "production: version 3" in out


def test_default_promotes_the_candidate_and_records_when_from_and_why(client, promote, capsys):
    before = datetime.now(UTC) - timedelta(seconds=2)
    promote("reason=first release")  # no version: the candidate
    assert production(client) == "3"
    tags = client.get_model_version(NAME, "3").tags
    assert tags["promoted_from"] == "none"
    assert tags["promotion_reason"] == "first release"
    assert before <= datetime.fromisoformat(tags["promoted_at"]) <= datetime.now(UTC)
    assert "version 3 (was none)" in capsys.readouterr().out


def test_refuses_a_worse_version_with_both_numbers(client, promote):
    promote("version=3")
    with pytest.raises(
        UserError, match=r"worse.*0\.4 \(version 2\) vs 0\.5 \(version 3\).*force=true"
    ):
        promote("version=2")
    assert production(client) == "3"
    assert "promoted_at" not in client.get_model_version(NAME, "2").tags


def test_force_promotes_a_worse_version_and_says_so(client, promote):
    promote("version=3")
    promote("version=2", "force=true", "reason=hotfix")
    assert production(client) == "2"
    tags = client.get_model_version(NAME, "2").tags
    assert tags["promoted_from"] == "3"
    assert tags["promotion_forced"] == "true"
    assert tags["promotion_reason"] == "hotfix"


def test_different_objectives_are_refused_unless_forced(client, promote):
    promote("version=3")
    with pytest.raises(UserError, match=r"davies_bouldin.*silhouette.*not comparable"):
        promote("version=4")
    promote("version=4", "force=true")
    assert production(client) == "4"


def test_a_single_run_version_is_compared_on_its_run_metric(client, promote, store):
    promote("version=1", "force=true")
    v1 = store["silhouette_v1"]
    assert 0.40 < v1 < 0.50  # the planted store's silhouette; the fakes bracket it
    with pytest.raises(UserError, match=rf"0\.4 \(version 2\) vs {v1:.6g} \(version 1\)"):
        promote("version=2")
    promote("version=3")
    assert production(client) == "3"


def test_rollback_walks_back_through_the_history(client, promote):
    promote("version=2")
    promote("version=3")
    promote("version=4", "force=true")
    history = json.loads(client.get_registered_model(NAME).tags[registry.HISTORY_TAG])
    assert history == ["2", "3", "4"]
    promote("rollback=true")
    assert production(client) == "3"
    assert client.get_model_version(NAME, "3").tags["promoted_from"] == "4"
    assert client.get_model_version(NAME, "3").tags["promotion_reason"] == "rollback from version 4"
    promote("rollback=true")
    assert production(client) == "2"
    with pytest.raises(UserError, match="no earlier production version"):
        promote("rollback=true")
    assert production(client) == "2"


def test_rollback_after_a_promotion_in_the_ui(client, promote):
    promote("version=3")
    client.set_registered_model_alias(NAME, registry.PRODUCTION, "1")  # what the UI does
    promote("rollback=true")
    assert production(client) == "3"


def test_promoting_production_again_changes_nothing(client, promote, capsys):
    promote("version=3")
    stamp = client.get_model_version(NAME, "3").tags["promoted_at"]
    promote("version=3")
    assert "already in production" in capsys.readouterr().out
    assert client.get_model_version(NAME, "3").tags["promoted_at"] == stamp


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["version=99"],
            r"version=99: 'customer-segmentation' has no such version \(versions: 1, 2, 3, 4\)",
        ),
        (["model_name=nope"], r"no registered model 'nope'.*src.sweep"),
        (["model_name=nope", "version=1"], r"no registered model 'nope'"),
        (["version=staging"], r"no version of 'customer-segmentation' has alias 'staging'"),
        (["rollback=true"], r"no version of 'customer-segmentation' has alias 'production'"),
        (["rollback=true", "version=2"], r"exclude each other"),
    ],
)
def test_errors_name_what_is_wrong(client, promote, overrides, message):
    with pytest.raises(UserError, match=message):
        promote(*overrides)


def test_no_candidate_says_how_to_get_one(client, promote, store):
    client.delete_registered_model_alias(NAME, registry.CANDIDATE)
    try:
        with pytest.raises(UserError, match=r"no version .* alias 'candidate'.*src.sweep"):
            promote("force=true")
    finally:
        client.set_registered_model_alias(NAME, registry.CANDIDATE, "3")


def test_a_missing_sqlite_store_is_not_created(tmp_path, make_cfg):
    uri = f"sqlite:///{tmp_path / 'nowhere.db'}"
    with pytest.raises(UserError, match="no tracking store at"):
        execute(make_cfg(f"tracking.uri={uri}", config_name="promote"))
    assert not (tmp_path / "nowhere.db").exists()


@pytest.mark.parametrize(
    ("new", "current", "refused"),
    [(0.7, 0.8, False), (0.9, 0.8, True), (0.8, 0.8, False)],
)
def test_davies_bouldin_is_minimised(new, current, refused):
    tags = {"objective": "cluster/davies_bouldin"}
    result = compare(
        "5", tags | {"objective_value": str(new)}, "4", tags | {"objective_value": str(current)}, {}
    )
    assert (result.refusal is not None) == refused


def test_cli_refusal_exits_2_with_a_message_and_leaves_no_files(client, promote, store, tmp_path):
    promote("version=3")
    env = clean_env() | {"MLFLOW_TRACKING_URI": store["uri"], "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "src.promote", "version=2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: not promoted: version 2 is worse")
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/, no .hydra, no log file
    assert production(client) == "3"
