"""src.tracking.registry against a real (temporary) SQLite registry; the registered model is a
trivial pyfunc, since the registry never looks inside it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import mlflow
import pytest
from mlflow import MlflowClient

from src.errors import UserError
from src.tracking import registry

NAME = "registry-test"


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[int]:  # noqa: ANN001
        return [0] * len(model_input)


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # MLflow's default artifact root is ./mlruns
        mp.setenv("MLFLOW_EXPERIMENT_ID", "")  # set_experiment exports it; undone on exit
        mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
        mlflow.set_experiment("tests")
        with mlflow.start_run():
            return mlflow.pyfunc.log_model(name="model", python_model=Constant()).model_uri


@pytest.fixture
def client(model_uri, request) -> MlflowClient:
    """A fresh registered model name per test, in the module's store."""
    client = MlflowClient()
    name = f"{NAME}-{request.node.name}".replace("[", "-").replace("]", "")
    client.create_registered_model(name)
    client.name = name  # type: ignore[attr-defined]
    return client


def register(client: MlflowClient, model_uri: str, trial: int, **tags: str):
    return registry.register_candidate(
        model_uri, client.name, tags=tags, once_key={"study": "s", "trial": str(trial)}
    )


def test_register_candidate_tags_moves_the_alias_and_registers_an_answer_once(client, model_uri):
    first = register(client, model_uri, 0, objective="cluster/silhouette", objective_value="0.5")
    again = register(client, model_uri, 0, objective="cluster/silhouette", objective_value="0.5")
    assert again.version == first.version
    second = register(client, model_uri, 1)
    assert int(second.version) == int(first.version) + 1
    versions = client.search_model_versions(f"name = '{client.name}'")
    assert len(versions) == 2
    held = client.get_model_version(client.name, first.version).tags
    assert held == {
        "objective": "cluster/silhouette",
        "objective_value": "0.5",
        "study": "s",
        "trial": "0",
    }
    assert client.get_registered_model(client.name).aliases == {registry.CANDIDATE: 2}


def test_register_candidate_describes_the_model_and_the_version(client, model_uri):
    client.log_metric(_run_id(client, model_uri), "cluster/silhouette", 0.4321)
    version = register(client, model_uri, 0)
    model = client.get_registered_model(client.name)
    assert model.description == registry.MODEL_DESCRIPTION
    described = client.get_model_version(client.name, version.version).description
    assert f"({version.run_id})" in described
    assert "cluster/silhouette 0.4321" in described
    # a description a person wrote on the model is kept
    client.update_registered_model(client.name, description="ours")
    register(client, model_uri, 1)
    assert client.get_registered_model(client.name).description == "ours"


def _run_id(client: MlflowClient, model_uri: str) -> str:
    return client.get_logged_model(model_uri.removeprefix("models:/")).source_run_id


def test_version_table_lists_newest_first_with_aliases(client, model_uri):
    register(client, model_uri, 0, combination="pca-kmeans-xgboost", f1_macro="0.97")
    register(client, model_uri, 1, combination="none-gmm-xgboost")
    client.set_registered_model_alias(client.name, registry.PRODUCTION, "2")
    table = registry.version_table(client, client.name)
    assert list(table.columns) == list(registry.VERSION_COLUMNS)
    assert table["version"].tolist() == [2, 1]
    assert table["aliases"].tolist() == ["candidate,production", ""]
    assert table["combination"].tolist() == ["none-gmm-xgboost", "pca-kmeans-xgboost"]
    assert table["f1_macro"].tolist() == ["", "0.97"]
    assert all(len(run_id) == 32 for run_id in table["run_id"])
    assert table["created"].str.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d$").all()


def test_move_production_keeps_a_history_and_tags_the_version(client, model_uri):
    for trial in range(3):
        register(client, model_uri, trial)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert registry.move_production(client, client.name, "1", now=when) is None
    assert registry.move_production(client, client.name, "3", reason="better", now=when) == "1"
    model = client.get_registered_model(client.name)
    assert json.loads(model.tags[registry.HISTORY_TAG]) == ["1", "3"]
    tags = client.get_model_version(client.name, "3").tags
    assert tags["promoted_at"] == "2026-01-02T03:04:05+00:00"
    assert tags["promoted_from"] == "1"
    assert tags["promotion_reason"] == "better"
    assert tags["promoted_by"]
    described = client.get_model_version(client.name, "3").description
    assert described.endswith(
        f"Promoted to production 2026-01-02T03:04:05+00:00 by {tags['promoted_by']} "
        "(from version 1): better"
    )
    register(client, model_uri, 2)  # the same answer again (a resumed sweep): the record stays
    assert client.get_model_version(client.name, "3").description == described
    # promoted again later without a reason: the old reason does not linger
    registry.move_production(client, client.name, "2", now=when)
    registry.move_production(client, client.name, "3", now=when)
    assert "promotion_reason" not in client.get_model_version(client.name, "3").tags


def test_rollback_skips_versions_deleted_since(client, model_uri):
    for trial in range(3):
        register(client, model_uri, trial)
    for version in ("1", "2", "3"):
        registry.move_production(client, client.name, version)
    client.delete_model_version(client.name, "2")
    assert registry.rollback_production(client, client.name) == ("3", "1")
    assert client.get_registered_model(client.name).aliases[registry.PRODUCTION] == 1
    assert json.loads(client.get_registered_model(client.name).tags[registry.HISTORY_TAG]) == ["1"]


def test_resolve_version_by_number_alias_and_default_candidate(client, model_uri):
    register(client, model_uri, 0)
    register(client, model_uri, 1)
    client.set_registered_model_alias(client.name, registry.CANDIDATE, "1")
    assert str(registry.resolve_version(client, client.name, None).version) == "1"
    assert str(registry.resolve_version(client, client.name, 2).version) == "2"
    assert str(registry.resolve_version(client, client.name, "candidate").version) == "1"
    with pytest.raises(UserError, match=r"version=7: .* no such version \(versions: 1, 2\)"):
        registry.resolve_version(client, client.name, 7)
    with pytest.raises(UserError, match=r"no registered model 'absent'"):
        registry.resolve_version(client, "absent", 1)


def test_sqlite_store_missing(tmp_path):
    (tmp_path / "here.db").write_bytes(b"")
    assert registry.sqlite_store_missing(f"sqlite:///{tmp_path / 'here.db'}") is None
    assert (
        registry.sqlite_store_missing(f"sqlite:///{tmp_path / 'gone.db'}") == tmp_path / "gone.db"
    )
    assert registry.sqlite_store_missing("http://127.0.0.1:5000") is None
