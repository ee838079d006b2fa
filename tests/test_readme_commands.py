"""Every command in README.md's ```bash blocks is run here, in README order, on the embedded
sample store in a fresh copy of the project (a temporary directory, as a new user's clone), or is
mapped to the test that covers it. A README command that is neither makes
`test_readme_command` fail naming it: add it to COMMANDS below.

One working directory serves the whole module, so later commands use what earlier ones wrote
(run -> sweep -> promote -> sample_export -> predict -> previous=), as they do for a reader. A
command that appears twice runs once. Where the README's own numbers would take minutes, the
entry says which override the test appends, and why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from src.servers import stop

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SERVE_STARTUP_S = 180


# ------------------------------------------------------------------------- reading the README
def readme_commands(text: str) -> list[str]:
    """The commands of every ```bash block, in order, without comments, each on one line
    (continuation lines and multi-line quoted arguments joined, whitespace runs made one
    space); a `a && b` chain gives its parts."""
    commands: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        pending = ""
        for line in block.splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending = f"{pending}\n{line}" if pending else line
            command, open_quote = _scan(pending)
            if open_quote or pending.rstrip().endswith("\\"):
                continue
            commands += [part.strip() for part in command.split(" && ")]
            pending = ""
        assert not pending, f"unfinished command in README: {pending!r}"
    return list(dict.fromkeys(commands))  # once each, in first-seen order


def _scan(text: str) -> tuple[str, str | None]:
    """`text` without comments, backslash-newlines and whitespace runs; and the quote still
    open at its end (None if none)."""
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == quote:
                quote = None
            if not (char.isspace() and out[-1] == " "):
                out.append(" " if char.isspace() else char)
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "#" and (not out or out[-1] == " "):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif char.isspace() or (char == "\\" and text[i + 1 : i + 2] == "\n"):
            if out and out[-1] != " ":
                out.append(" ")
            i += 2 if char == "\\" else 1
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out).strip(), quote


# ------------------------------------------------------------------------- what each one gets
@dataclass(frozen=True)
class Run:
    """Run the command with bash in the working directory: exit status `status`, every `expect`
    text in its output, every file in `files` there afterwards. `rewrite` (old, new) pairs and
    `append` (overrides added at the end) make it fast or point it at a free port; `at_root`
    runs it in the project itself."""

    expect: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    rewrite: tuple[tuple[str, str], ...] = ()
    append: str = ""
    status: int = 0
    at_root: bool = False


@dataclass(frozen=True)
class Serve:
    """Start the server (bash, own process group), wait until `probe` answers 200, leave it
    running for the commands after it (curl), stop its whole group when the module ends."""

    probe: str
    rewrite: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Covered:
    """Not run here: `where` (a test, `path::name`, or a file containing `needle`) covers it."""

    where: str
    needle: str = ""


CI = Covered(".ci/run", "pip install --quiet -e '.[dev]'")  # a fresh venv, then the tests
PORT = "{port}"  # a free port, replacing the README's 5001 (it may be taken on this machine)
TINY_SWEEP = (("sweep.n_trials=30", "sweep.n_trials=3"),)  # 30 trials take minutes
SMALL = " data.synthetic.customers=500"  # the sample store, smaller: a multirun of three is slow
SMALL_SWEEP = f" sweep.n_trials=2{SMALL}"  # sweeps of 24-50 trials take many minutes
BENCH = " --lines 2000"  # benchmarks measure 100k-5M lines on purpose; the command works small
CURL_PREFIX = "curl -s -X POST http://127.0.0.1:5001/invocations"

COMMANDS: dict[str, Run | Serve | Covered] = {
    # Quick start: the install steps are what CI does; the commands after them run.
    "python3 -m venv .venv": CI,
    ". .venv/bin/activate": CI,
    "pip install -e .": CI,
    "pip install -e '.[dev]'": CI,
    "python -m pytest": CI,
    "python -m src.run": Run(
        expect=("cluster/silhouette",), files=("mlflow.db", "outputs", "mlartifacts")
    ),
    "python -m src.ui": Covered(
        "tests/test_ui.py::test_the_ui_answers_and_stopping_it_leaves_no_process"
    ),
    # Your own export
    "python -m src.sample_export out=export_2026-02.json until=2026-02-28": Run(
        expect=("sales up to 2026-02-28",),
        files=("export_2026-02.json", "export_2026-02.truth.csv"),
    ),
    "python -m src.run data.path=export_2026-02.json": Run(expect=("cluster/silhouette",)),
    # Files a reader has (the UCI data set, their own shop's files): the features they show.
    "python -m src.run data=online_retail data.path=online_retail_II.csv": Covered(
        "tests/test_small_stores.py::test_a_pound_store_from_the_online_retail_preset_speaks_pounds"
    ),
    "python -m src.run data.path=shop.csv data.columns.customer_id=client data.columns.amount=total": Covered(
        "tests/data/test_load.py::test_another_stores_columns_amount_is_quantity_times_price"
    ),
    "python -m src.run data.path=shop.xlsx data.sheet=Продажи": Covered(
        "tests/data/test_nasty_exports.py::test_excel_first_sheet_by_default_and_data_sheet_by_name_or_position"
    ),
    # What a run does
    # t-SNE runs: 25-35 s each here even on a small store; these tests run the same choices.
    "python -m src.run reducer=tsne clusterer=gmm classifier=xgboost": Covered(
        "tests/test_pipeline.py::test_combination_runs"
    ),
    "python -m src.run reducer=tsne reducer.perplexity=50 clusterer=kmeans clusterer.n_clusters=6 seed=7": Covered(
        "tests/test_run.py::test_help_and_cfg_job_work"
    ),
    "python -m src.run -m clusterer=kmeans,gmm,birch": Run(
        expect=("kmeans", "gmm", "birch"), files=("outputs/multirun",), append=SMALL
    ),
    "python -m src.run --help": Run(expect=("reducer: none, pca, tsne, umap",)),
    "python -m src.run reducer=tsne --cfg job": Run(expect=("sklearn.manifold.TSNE",)),
    # Sweeps
    # The default budget is 30 trials: the same command as `sweep.n_trials=30` below, run there.
    "python -m src.sweep": Covered(
        "tests/test_readme_commands.py", '"python -m src.sweep sweep.n_trials=30": Run('
    ),
    # Option lists and an objective, as test_sweep's sweeps give them (50 s here even tiny).
    "python -m src.sweep sweep.n_trials=50 'sweep.reducers=[pca,tsne]' 'sweep.clusterers=[kmeans,gmm,dbscan]' sweep.objective=cluster/silhouette": Covered(
        "tests/test_sweep.py::test_trials_are_nested_under_one_sweep_run"
    ),
    "python -m src.sweep 'sweep.objectives=[cluster/silhouette,classifier/f1_macro]'": Run(
        expect=("2 trial(s) completed",), append=SMALL_SWEEP
    ),
    "python -m src.sweep +experiment=seed_study": Run(
        expect=("2 trial(s) completed",), append=SMALL_SWEEP
    ),
    # Team setup: PostgreSQL and a tracking server.
    "pip install -e '.[postgres]'": CI,
    "python -m src.team_servers --database postgresql://postgres:PASSWORD@db-host:5432 --artifacts /srv/mlflow-artifacts --host 0.0.0.0 --port 5000": Covered(
        "tests/test_team.py::test_two_workers_share_one_study_and_survive_one_killed"
    ),
    "export MLFLOW_TRACKING_URI=http://mlflow-host:5000": Covered(
        "tests/test_team.py::test_two_workers_share_one_study_and_survive_one_killed"
    ),
    "python -m src.sweep sweep.storage=postgresql://postgres:PASSWORD@db-host:5432/mlflow_optuna sweep.study_name=spring-2026 sweep.n_trials=200 data.path=/shared/export.json": Covered(
        "tests/test_team.py::test_two_workers_share_one_study_and_survive_one_killed"
    ),
    # From a sweep to production
    "python -m src.sweep sweep.n_trials=30": Run(
        expect=("registered customer-segmentation version", "with alias 'candidate'"),
        rewrite=TINY_SWEEP,
    ),
    "python -m src.promote": Run(expect=("candidate",)),
    """python -m src.promote version=candidate 'reason="Q1 sweep, silhouette 0.43"'""": Run(
        expect=("production",)
    ),
    "python -m src.sample_export out=export_2026-01.json until=2026-01-31": Run(
        expect=("sales up to 2026-01-31",), files=("export_2026-01.json",)
    ),
    "python -m src.predict input=export_2026-01.json output=segments_2026-01.csv": Run(
        files=("segments_2026-01.csv",)
    ),
    "python -m src.predict input=export_2026-02.json output=segments_2026-02.csv previous=segments_2026-01.csv": Run(
        expect=("->",),
        files=(
            "segments_2026-02.csv",
            "segments_2026-02.migration.csv",
            "segments_2026-02.migration.png",
        ),
    ),
    "mlflow models serve -m models:/customer-segmentation@production -h 127.0.0.1 -p 5001 --env-manager local": Serve(
        probe="/ping", rewrite=(("-p 5001", f"-p {PORT}"),)
    ),
    # Promote a model
    "python -m src.promote version=candidate": Run(expect=("already in production",)),
    'python -m src.promote version=7 reason="..."': Covered(
        "tests/test_promote.py::test_refuses_a_worse_version_with_both_numbers"
    ),
    "python -m src.promote rollback=true": Covered(
        "tests/test_promote.py::test_rollback_walks_back_through_the_history"
    ),
    # Serve over REST: the server the serve command above started.
    CURL_PREFIX: Run(
        expect=('"customer_id": "1001"', '"customer_id": "2002"', '"segment_name"'),
        rewrite=(("127.0.0.1:5001", f"127.0.0.1:{PORT}"),),
    ),
    # MLflow Projects
    "mlflow run . -e main --env-manager local --experiment-name customer-segmentation -P reducer=pca -P clusterer=kmeans -P data_path=$PWD/export_2026-02.json": Covered(
        "tests/test_mlproject.py::test_mlflow_run_main_records_a_run"
    ),
    "mlflow run . -e sweep --env-manager local --experiment-name customer-segmentation -P n_trials=20 -P clusterers='[kmeans,gmm]'": Covered(
        "tests/test_mlproject.py::test_entry_points_render_commands_the_apps_accept"
    ),
    # Renders `python -m src.promote version=candidate`, which runs above (mlflow run adds 15 s).
    "mlflow run . -e promote --env-manager local -P version=candidate": Covered(
        "tests/test_mlproject.py::test_entry_points_render_commands_the_apps_accept"
    ),
    "mlflow run . -e predict --env-manager local -P input=$PWD/export_2026-02.json -P output=$PWD/segments.csv": Run(
        files=("segments.csv",)
    ),
    # Development
    'python -m pytest -m "not slow"': CI,
    "ruff check src tests": Run(expect=("All checks passed",), at_root=True),
    "ruff format --check src tests": Run(expect=("already formatted",), at_root=True),
    ".ci/run": Covered(".ci/run", "python -m pytest"),
    # Benchmarks: the ones with a size run small; `run` and `sweep` time whole commands,
    # repeatedly (minutes), and `predict` trains a model first (25 s here even small): they
    # have no test, and are mapped to their code, so a rename still fails here.
    "python -m src.bench data": Run(append=BENCH),
    "python -m src.bench load": Run(append=BENCH),
    "python -m src.bench excel": Run(append=BENCH),
    "python -m src.bench run": Covered("src/bench/cli_runs.py", "def bench_run("),
    "python -m src.bench sweep": Covered("src/bench/cli_runs.py", "def bench_sweep("),
    "python -m src.bench predict": Covered("src/bench/predict.py", "def bench_predict("),
    "python -m src.bench holdout": Covered(  # two data sets' full runs; its test: the CDNOW input
        "tests/test_bench_holdout.py::test_cdnow_lines_become_an_export_with_one_order_per_customer_and_day"
    ),
}


def entry(command: str) -> Run | Serve | Covered | None:
    if command.startswith(CURL_PREFIX):
        return COMMANDS[CURL_PREFIX]
    return COMMANDS.get(command)


README_COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ the user's clone
@dataclass
class Clone:
    path: Path
    env: dict[str, str]
    port: int
    servers: list[subprocess.Popen]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Iterator[Clone]:
    """A fresh copy of the project, where every command runs (`mlflow run .` needs the
    MLproject there); the venv's `python`, `mlflow` and `ruff` first on PATH."""
    path = tmp_path_factory.mktemp("clone")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for item in ("MLproject", "python_env.yaml", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / item, path / item)
    for folder in ("src", "conf"):
        shutil.copytree(ROOT / folder, path / folder, ignore=ignore)
    leaked = (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_RUN_ID",
    )
    env = {k: v for k, v in os.environ.items() if k not in leaked}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["CUSTOMER_SEGMENTATION_CACHE"] = str(path / ".cache")  # a new user's: generated anew
    servers: list[subprocess.Popen] = []
    yield Clone(path, env, free_port(), servers)
    for server in servers:
        stop(server)  # the whole process group, as src.ui and src.team_servers stop theirs


def rewritten(command: str, rewrite: tuple[tuple[str, str], ...], port: int) -> str:
    for old, new in rewrite:
        assert old in command, f"{old!r} is no longer in {command!r}: update its entry"
        command = command.replace(old, new.format(port=port))
    return command


# ------------------------------------------------------------------------------------ the tests
def test_the_readme_has_commands_and_every_entry_is_still_in_it():
    """COMMANDS does not rot: an entry whose command left the README is removed with it."""
    assert len(README_COMMANDS) > 30
    stale = [c for c in COMMANDS if not any(r == c or r.startswith(c) for r in README_COMMANDS)]
    assert not stale, f"COMMANDS entries no longer in README.md: {stale}"


def test_every_readme_command_is_run_or_mapped():
    """Fast, so `-m "not slow"` catches it too: a new README command needs an entry."""
    unmapped = [c for c in README_COMMANDS if entry(c) is None]
    assert not unmapped, (
        f"README commands not run nor mapped to a test: {unmapped}. Add each to COMMANDS in "
        "tests/test_readme_commands.py: Run(...) to run it here, or Covered('tests/...') naming "
        "the test that runs it."
    )
    for what in COMMANDS.values():
        if isinstance(what, Covered):
            check_covered(what)


@pytest.mark.slow
@pytest.mark.parametrize("command", README_COMMANDS)
def test_readme_command(command: str, clone: Clone) -> None:
    what = entry(command)
    if what is None:
        pytest.fail(
            f"README command not run nor mapped to a test: {command!r}. Add it to COMMANDS in "
            "tests/test_readme_commands.py: Run(...) to run it here, or Covered('tests/...') "
            "naming the test that runs it."
        )
    if isinstance(what, Covered):
        check_covered(what)
    elif isinstance(what, Serve):
        serve(command, what, clone)
    else:
        run(command, what, clone)


def check_covered(what: Covered) -> None:
    path, _, name = what.where.partition("::")
    assert (ROOT / path).is_file(), f"{path} does not exist"
    needle = f"def {name}(" if name else what.needle
    assert needle in (ROOT / path).read_text(encoding="utf-8"), f"{needle!r} not in {path}"


def run(command: str, what: Run, clone: Clone) -> None:
    line = rewritten(command, what.rewrite, clone.port) + what.append
    cwd = ROOT if what.at_root else clone.path
    done = subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=clone.env, capture_output=True, text=True, timeout=600
    )
    output = done.stdout + done.stderr
    assert done.returncode == what.status, f"{line}\nexit {done.returncode}:\n{output[-4000:]}"
    assert "Traceback" not in output, output[-4000:]
    for text in what.expect:
        assert text in output, f"{line}: {text!r} not in its output:\n{output[-4000:]}"
    for name in what.files:
        assert (cwd / name).exists(), f"{line}: did not write {name}"


def serve(command: str, what: Serve, clone: Clone) -> None:
    line = rewritten(command, what.rewrite, clone.port)
    log = (clone.path / f"server-{clone.port}.log").open("w")
    server = subprocess.Popen(
        ["bash", "-c", f"exec {line}"], cwd=clone.path, env=clone.env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    clone.servers.append(server)
    deadline = time.monotonic() + SERVE_STARTUP_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"{line} exited {server.returncode}:\n{log_of(clone)}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{clone.port}{what.probe}") as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{line}: no answer within {SERVE_STARTUP_S} s:\n{log_of(clone)}")


def log_of(clone: Clone) -> str:
    return (clone.path / f"server-{clone.port}.log").read_text()[-3000:]


# ----------------------------------------------------------------- the parser, on a known text
def test_commands_are_read_as_bash_reads_them():
    text = (
        "intro\n```bash\n"
        "# a comment line\n"
        "a && python -m x 'k=\"a, b\"'   # the sweep's note\n"
        "python -m y one=1 \\\n    two=2\n"
        "curl -d '{\"a\": [\n   1]}'\n"
        '# {"out": 1}\n'
        "python -m x 'k=\"a, b\"'\n"
        "```\n"
        "```python\nnot = 'a command'\n```\n"
    )
    assert readme_commands(text) == [
        "a",
        "python -m x 'k=\"a, b\"'",
        "python -m y one=1 two=2",
        "curl -d '{\"a\": [ 1]}'",
    ]
    assert json.loads(readme_commands(text)[3].split("-d ")[1].strip("'")) == {"a": [1]}
