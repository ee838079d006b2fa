"""The experiment's "Compare runs" view in MLflow's UI: a saved view (MLflow 3's runs table reads
saved views from experiment tags `mlflow.sharedViewState.<key>`; its "Views" menu lists them and
`?viewStateShareKey=<key>` opens one) that shows the `best` tag and every metric in reading
order, cluster/* first, time/* last, with the runs ranked by silhouette.

Without it the runs table shows no metric column, and the column picker lists metrics in
alphabetical order (classifier/* before cluster/*, time/* before validity/*); the UI has no other
setting, experiment tag or URL parameter that orders them."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from src.secrets import mask_secrets

log = logging.getLogger(__name__)
VIEW_KEY = "compare-runs"
VIEW_NAME = "Compare runs"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
# the validity checks (hold-out, planted truth) after the scores they check; "": any other metric
GROUPS = ("cluster/", "classifier/", "validity/", "holdout/", "synthetic/", "", "data/", "time/")
FIRST_IN_GROUP = ("cluster/silhouette", "cluster/davies_bouldin", "classifier/f1_macro")
TAG_COLUMNS = ("tags.`best`", "tags.`best_trial`")
RANKED_BY = "cluster/silhouette"


def metric_order(names: Iterable[str]) -> list[str]:
    """Metric names in reading order: by group (cluster, classifier, the validity checks, others,
    data, time), the headline metrics first in their group, then alphabetically."""

    def key(name: str) -> tuple[int, int, str]:
        group = next(
            (i for i, prefix in enumerate(GROUPS) if prefix and name.startswith(prefix)),
            GROUPS.index(""),
        )
        first = FIRST_IN_GROUP.index(name) if name in FIRST_IN_GROUP else len(FIRST_IN_GROUP)
        return group, first, name

    return sorted(set(names), key=key)


def metric_column(name: str) -> str:
    return f"metrics.`{name}`"


def view_state(metrics: Iterable[str]) -> dict:
    """The view's state as MLflow's runs table stores it: shown columns and their order, sort."""
    ordered = metric_order(metrics)
    columns = [*TAG_COLUMNS, *(metric_column(m) for m in ordered)]
    # wide enough for the metric's name: the UI's default cuts "cluster/silhouette" short
    widths = {metric_column(m): max(90, 7 * len(m) + 20) for m in ordered}
    return {
        "selectedColumns": columns,
        "columnOrder": columns,
        "columnWidths": widths | {TAG_COLUMNS[0]: 70, TAG_COLUMNS[1]: 190},
        "orderByKey": metric_column(RANKED_BY),
        "orderByAsc": False,
    }


def view_metrics(tag_value: str | None) -> set[str]:
    """The metric names the saved view shows (none if it is missing or not ours to read)."""
    if not tag_value:
        return set()
    try:
        columns = json.loads(json.loads(tag_value)["state"])["selectedColumns"]
    except (ValueError, KeyError, TypeError):
        return set()
    prefix = metric_column("")[:-1]
    return {c[len(prefix) : -1] for c in columns if c.startswith(prefix)}


def ensure_compare_view(experiment_id: str, metrics: Iterable[str]) -> None:
    """Make the experiment's "Compare runs" view show `metrics` too (written only when it lacks
    one of them: a run logging the usual metrics costs one read). Processes logging together to
    a tracking server may both write it; each write holds what was there plus its own metrics.
    A refused write is tried once more, then only warned about: the view is a convenience, the
    run's own record is what matters."""
    client = MlflowClient()
    for attempt in range(2):
        shown = view_metrics(client.get_experiment(experiment_id).tags.get(VIEW_TAG))
        wanted = shown | set(metrics)
        if wanted == shown:
            return
        now = int(time.time() * 1000)
        envelope = {
            "name": VIEW_NAME,
            "createdAt": now,
            "updatedAt": now,
            "state": json.dumps(view_state(wanted)),
        }
        try:
            client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(envelope))
            return
        except MlflowException as err:
            if attempt:  # refused twice (a server that lets this user log runs, not edit tags)
                log.warning("the 'Compare runs' view was not updated: %s", mask_secrets(str(err)))


def runs_table_url(server: str, experiment_id: str, view: bool = True) -> str:
    """The experiment's runs table in MLflow's UI at `server` (http://127.0.0.1:5000), as a
    model-training experiment (MLflow 3.17's UI otherwise opens every experiment on its GenAI
    overview, whatever `mlflow.experimentKind` says), in the "Compare runs" view."""
    query = "workflowType=machine_learning" + (f"&viewStateShareKey={VIEW_KEY}" if view else "")
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"
