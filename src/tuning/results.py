"""Results tables of a sweep, straight from its MLflow trial runs (never typed by hand).

    python -m src.tuning.results --study truth_recovery [--write experiments/README.md]

Prints, per reducer-clusterer-classifier combination, the trial that is best on the sweep's
objective with its cluster, classifier, hold-out, stability and (on the synthetic store) truth
metrics; then, over all feasible trials, which trial each criterion would pick and how well that
trial recovers the true groups. With --write, the tables replace the block between
`<!-- results:<study> -->` and `<!-- /results:<study> -->` in the given file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import mlflow
import pandas as pd

COLUMNS = {
    "cluster/silhouette": "silhouette",
    "cluster/davies_bouldin": "DB",
    "cluster/n_clusters": "k",
    "classifier/accuracy": "accuracy",
    "classifier/f1_macro": "F1 macro",
    "holdout/eta2_spend": "eta2 spend",
    "holdout/quintile/eta2_spend_gain": "gain vs RFM quintiles",
    "cluster/stability_ari": "stability",
    "synthetic/ari": "truth ARI",
}
# Criteria a user could pick a segmentation by, and whether higher is better.
CRITERIA = {
    "cluster/silhouette": True,
    "cluster/davies_bouldin": False,
    "classifier/f1_macro": True,
    "holdout/quintile/eta2_spend_gain": True,
    "cluster/stability_ari": True,
}


def trial_runs(study: str, experiment: str) -> pd.DataFrame:
    runs = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string=f"tags.study = '{study}' and tags.run_kind = 'trial'",
    )
    if runs.empty:
        raise SystemExit(f"no trial runs of study '{study}' in experiment '{experiment}'")
    runs = runs[runs["status"] == "FINISHED"]
    metrics = {f"metrics.{m}": m for m in COLUMNS if f"metrics.{m}" in runs}
    table = runs[["tags.mlflow.runName", "tags.trial", "tags.feasible", *metrics]].rename(
        columns={"tags.mlflow.runName": "combination", "tags.trial": "trial", **metrics}
    )
    table["feasible"] = table["tags.feasible"] == "True"
    if "cluster/n_clusters" in table:
        table["cluster/n_clusters"] = table["cluster/n_clusters"].astype(int)
    return table.drop(columns="tags.feasible")


def best_per_combination(table: pd.DataFrame, objective: str) -> pd.DataFrame:
    feasible = table[table["feasible"]]
    best = feasible.loc[feasible.groupby("combination")[objective].idxmax()]
    counts = table.groupby("combination").size().rename("trials")
    best = best.join(counts, on="combination").sort_values(objective, ascending=False)
    shown = ["combination", "trials", "trial", *[m for m in COLUMNS if m in best]]
    return best[shown].rename(columns=COLUMNS)


def criteria_table(table: pd.DataFrame) -> pd.DataFrame | None:
    feasible = table[table["feasible"]]
    if "synthetic/ari" not in feasible or feasible.empty:
        return None
    rows = []
    truth_best = feasible["synthetic/ari"].max()
    for metric, higher in CRITERIA.items():
        if metric not in feasible or feasible[metric].isna().all():
            continue
        pick = feasible.loc[feasible[metric].idxmax() if higher else feasible[metric].idxmin()]
        rank = int((feasible["synthetic/ari"] > pick["synthetic/ari"]).sum()) + 1
        rows.append(
            {
                "criterion": f"{'max' if higher else 'min'} {metric}",
                "picks": f"{pick['combination']} (trial {pick['trial']})",
                "truth ARI of the pick": round(pick["synthetic/ari"], 3),
                "rank by truth ARI": f"{rank} of {len(feasible)}",
            }
        )
    rows.append(
        {
            "criterion": "(oracle) max synthetic/ari",
            "picks": feasible.loc[feasible["synthetic/ari"].idxmax(), "combination"],
            "truth ARI of the pick": round(truth_best, 3),
            "rank by truth ARI": f"1 of {len(feasible)}",
        }
    )
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def report(study: str, experiment: str, objective: str) -> str:
    table = trial_runs(study, experiment)
    parts = [
        f"{len(table)} finished trials, {int(table['feasible'].sum())} feasible. Best feasible "
        f"trial of each combination by `{objective}`:",
        "",
        markdown(best_per_combination(table, objective)),
    ]
    criteria = criteria_table(table)
    if criteria is not None:
        parts += ["", "Which trial each criterion picks, and how well it recovers the true groups:",
                  "", markdown(criteria)]  # fmt: skip
    return "\n".join(parts)


def write_block(path: Path, study: str, text: str) -> None:
    start, end = f"<!-- results:{study} -->", f"<!-- /results:{study} -->"
    content = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(content):
        raise SystemExit(f"{path}: no block {start} ... {end} to fill")
    path.write_text(pattern.sub(lambda _m: f"{start}\n{text}\n{end}", content), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.tuning.results", description=__doc__)
    parser.add_argument("--study", required=True)
    parser.add_argument("--experiment", default="customer-segmentation")
    parser.add_argument("--objective", default="cluster/silhouette")
    parser.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    parser.add_argument("--write", type=Path, help="markdown file with a results block to fill")
    args = parser.parse_args(argv)
    mlflow.set_tracking_uri(args.tracking_uri)
    text = report(args.study, args.experiment, args.objective)
    print(text)
    if args.write:
        write_block(args.write, args.study, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
