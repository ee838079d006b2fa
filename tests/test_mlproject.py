"""MLproject: every entry point renders a command whose overrides the Hydra app accepts, and
`mlflow run . -e main --env-manager local -P reducer=pca -P clusterer=kmeans` records a run."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.projects._project_spec import load_project

from tests.conftest import store_records, write_json

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "src.run": "config",
    "src.sweep": "sweep",
    "src.promote": "promote",
    "src.predict": "predict",
}


def test_entry_points_render_commands_the_apps_accept(make_cfg, tmp_path):
    project = load_project(str(ROOT))
    assert set(project._entry_points) == {"main", "sweep", "promote", "predict"}
    export = write_json(tmp_path / "export.json", store_records()[0][:10])
    given = {"predict": {"input": str(export), "output": "segments.csv"}}
    expected = {
        "main": {
            "features": "value",
            "reducer": "none",
            "clusterer": "value_tiers",
            "classifier": "xgboost",
            "seed": 42,
        },  # fmt: skip
        "sweep": {"sweep": {"n_trials": 30, "objective": "cluster/silhouette", "k": 5}},
        "promote": {"version": "", "force": False, "rollback": False},
        "predict": {"input": str(export), "output": "segments.csv", "previous": ""},
    }
    for name, entry in project._entry_points.items():
        words = shlex.split(entry.compute_command(given.get(name, {}), str(tmp_path)))
        assert words[:2] == ["python", "-m"]
        cfg = make_cfg(*words[3:], config_name=CONFIGS[words[2]])
        for key, value in expected[name].items():
            if isinstance(value, dict):
                assert {k: cfg[key][k] for k in value} == value
            elif key in ("features", "reducer", "clusterer", "classifier"):
                assert f"{key}={value}" in words, (name, key)  # the option file picked
            else:
                assert cfg[key] == value, (name, key)
    main = shlex.split(
        project.get_entry_point("main").compute_command({"data_path": "/a b/x.json"}, "")
    )
    assert "data.path=/a b/x.json" in main  # a path with a space stays one argument
    assert make_cfg(*main[3:]).data.path == "/a b/x.json"


def clean_env() -> dict[str, str]:
    """This process's environment without the MLflow run/experiment another test may have left."""
    leaked = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
    return {k: v for k, v in os.environ.items() if k not in leaked}


@pytest.mark.slow
def test_mlflow_run_main_records_a_run(tmp_path):
    project = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    project.mkdir()
    for item in ("MLproject", "python_env.yaml", "pyproject.toml"):
        shutil.copy(ROOT / item, project / item)
    for folder in ("src", "conf"):
        shutil.copytree(ROOT / folder, project / folder, ignore=ignore)
    export = write_json(tmp_path / "export.json", store_records()[0])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    bin_dir = str(Path(sys.executable).parent)  # `python` in the command is the venv's
    env = clean_env() | {
        "MLFLOW_TRACKING_URI": uri,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    command = [sys.executable, "-m", "mlflow", "run", str(project), "-e", "main",
               "--env-manager", "local", "-P", "reducer=pca", "-P", "clusterer=kmeans",
               "-P", f"data_path={export}"]  # fmt: skip
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.project.entryPoint"] == "main"
    assert (run.data.tags["reducer"], run.data.tags["clusterer"], run.data.tags["classifier"]) == (
        "pca", "kmeans", "xgboost"
    )  # fmt: skip
    (dataset,) = run.inputs.dataset_inputs  # the export it read (a param only as data_digest)
    assert str(export) in dataset.dataset.source
    assert run.data.params["data_digest"] == run.data.tags["data_digest"]
    assert 0.0 < run.data.metrics["cluster/silhouette"] <= 1.0
    assert run.data.metrics["data/customers"] == 300
    models = client.search_logged_models([run.info.experiment_id])
    assert [m.source_run_id for m in models] == [run.info.run_id]
