"""How customers moved between segments from one export's segmentation to the next.

Segments are matched by name (what marketers read, and what stays comparable when a different
model version produced the earlier file). Customers only in the new file come from "(new)";
customers only in the old file go to "(gone)".
"""

from __future__ import annotations

import pandas as pd

from src.errors import UserError

NEW = "(new)"
GONE = "(gone)"
KEY_COLUMNS = ("customer_id", "segment_name")


def migration_matrix(previous: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Customer counts, rows = segment before (plus "(new)"), columns = segment now (plus
    "(gone)"). Both frames need customer_id and segment_name, one row per customer.

    Rows and columns list the same segments in the same order (the current segmentation's
    segment_id order, then segments only the previous one had), so the diagonal is "stayed".
    """
    before = _assignments(previous, "previous segments")
    after = _assignments(current, "current segments")
    order = _segment_order(current, previous)
    joined = pd.merge(
        before.rename("from"), after.rename("to"), left_index=True, right_index=True, how="outer"
    )
    joined["from"] = joined["from"].fillna(NEW)
    joined["to"] = joined["to"].fillna(GONE)
    counts = pd.crosstab(joined["from"], joined["to"]) if len(joined) else pd.DataFrame()
    matrix = counts.reindex(index=[*order, NEW], columns=[*order, GONE], fill_value=0)
    matrix = matrix.fillna(0).astype("int64")
    matrix.index.name, matrix.columns.name = "from", "to"
    return matrix


def biggest_movements(matrix: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """The `top` largest off-diagonal cells: from, to, customers, share of the from-row."""
    long = matrix.stack().rename("customers").reset_index()
    long.columns = ["from", "to", "customers"]
    row_totals = matrix.sum(axis=1)
    moved = long[(long["from"] != long["to"]) & (long["customers"] > 0)].copy()
    moved["share_of_from"] = (moved["customers"] / moved["from"].map(row_totals)).round(4)
    moved = moved.sort_values(["customers", "from", "to"], ascending=[False, True, True])
    return moved.head(top).reset_index(drop=True)


def _assignments(frame: pd.DataFrame, what: str) -> pd.Series:
    """segment_name indexed by customer_id (as text); one row per customer."""
    missing = [c for c in KEY_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(
            f"{what}: missing column(s) {', '.join(missing)}; need {', '.join(KEY_COLUMNS)}"
        )
    ids = frame["customer_id"].astype(str).str.strip()
    duplicated = ids[ids.duplicated()].unique()
    if len(duplicated):
        raise UserError(
            f"{what}: {len(duplicated)} customer id(s) appear more than once, e.g. "
            f"{', '.join(duplicated[:3])}; expected one row per customer"
        )
    return pd.Series(frame["segment_name"].astype(str).to_numpy(), index=ids.to_numpy())


def _segment_order(current: pd.DataFrame, previous: pd.DataFrame) -> list[str]:
    """Segment names by segment_id (the current file's id where it has the name, else the
    previous file's), so both axes read in the model's value order; unknown ids go last."""
    keys: dict[str, float] = {}
    for frame in (current, previous):
        ids = (
            pd.to_numeric(frame["segment_id"], errors="coerce")
            if "segment_id" in frame.columns
            else pd.Series(float("inf"), index=frame.index)
        )
        firsts = pd.DataFrame(
            {"name": frame["segment_name"].astype(str), "sid": ids.fillna(float("inf"))}
        )
        for name, sid in firsts.drop_duplicates("name").itertuples(index=False):
            keys.setdefault(name, float(sid))
    return sorted(keys, key=lambda name: keys[name])  # stable: ties keep first-seen order
