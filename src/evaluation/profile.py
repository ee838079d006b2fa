"""Segment profiles (size, revenue share, typical R, F, M) and marketing names for segments.

How a segment gets its name (README: generate the table with `describe_rules()`):

1. Each segment's typical value on each of R, F and M is taken halfway, on a log scale, between its
   median and its mean: the median resists a few extreme customers, the mean still separates
   segments whose medians tie (many segments can have a median of 1 order).
2. Each typical value becomes a score from 1 to 5 relative to the run's other segments: the
   average of a rank score (lowest segment 1, highest 5, distinct values evenly spaced between;
   a value less than 10% above the next lower one shares its rank) and a position score (where
   the value lies between the lowest and the highest segment's, on a log scale). Rank alone would
   turn a tiny gap into a whole point; position alone would let one extreme segment squeeze all
   the others to the bottom. When the highest value is less than 25% above the lowest, the
   segments do not really differ on that measure and all score 3. Recency is inverted: the most
   recent segment gets R = 5. (Percentages compare 1 + value, so 0 days or 0 spend work.)
3. When the segments differ on all three measures, the scores, rounded to whole numbers, are looked up in `NAMING_RULES`, an ordered table: the
   first row whose R, F and M ranges all contain the scores names the segment.
4. Names are unique within a run. When several segments want one name, the one that matches it
   best keeps it: first a segment whose scores lie inside the row's ranges, then the one closest
   to the row's typical scores, then the larger segment, then the lower segment id. The others
   move to their next candidate: the next matching row of the table, then the names whose typical
   scores are closest, up to `MAX_FALLBACK_DISTANCE` score points away. A segment left without a
   name (always so beyond 12 segments, sometimes sooner when several segments are alike) takes its
   first choice, shared with the segment holding it (step 6 tells them apart).
5. When the segments do not differ on a measure (a store whose purchases all fall on one day has
   one recency; a store of one-time buyers one frequency), the table's names would claim what the
   data cannot show ("Lost" for customers who bought today). The name is then built from the
   measures that do differ, each scored low (1-2), mid (3) or high (4-5): "Frequent big spenders",
   "Lapsed small spenders", "Recent occasional buyers" (`DESCRIPTIVE_WORDS`).
6. Segments sharing a name are told apart by a qualifier on the measure on which they differ
   most, in words, never numbers: "Loyal, higher spend" / "Loyal, lower spend"; three to five
   segments get lowest / lower / mid / higher / highest (`QUALIFIERS`); more than five are split
   into up to five groups on that measure, then qualified again on the next one.
7. When the profile has lifetime value (a `p_alive` column), the churn names (`CHURN_NAMES`:
   "Can't lose them", "At risk") go only to a segment worth winning back and likely slipping:
   high spend (whole M score 4-5) and a mean P(alive) below the mean of all customers. Any other
   segment treats those rows as if they were not in the table; one left with no acceptable name
   gets a descriptive name (step 5's words for R, F and M: "Lapsed frequent big spenders").
8. With lifetime value, a segment's expected value per customer over the horizon is scored 1-5
   like M (step 2) and counts in the closeness of step 4 as a fourth measure, compared with the
   row's typical M: of two segments inside "Champions", the one customers are expected to spend
   more in keeps it (a top value tier of wholesale buyers with 11 orders, not the tier below with
   19 smaller ones), and of two inside "Lost" the one expected to spend less. Which rows a segment
   matches still depends on R, F and M only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from src.data.schema import FREQUENCY, MONETARY, RECENCY, RFM
from src.evaluation.metrics import NOISE
from src.features.clv import segment_value

PROFILE_COLUMNS = (
    "segment_id",
    "size",
    "customer_share",
    "revenue_share",
    "recency_mean",
    "recency_median",
    "frequency_mean",
    "frequency_median",
    "monetary_mean",
    "monetary_median",
)
# With lifetime value (src.features.clv, over clv.horizon_days): per customer, the expected
# purchases and expected spend (value) over the horizon, mean P(alive), and the segment's share of
# all customers' expected value.
VALUE_PROFILE_COLUMNS = ("expected_purchases", "expected_value", "p_alive", "value_share")

# A segment whose matching names are all taken falls back only to names whose typical scores lie
# within this distance of its own (in R, F, M score points); beyond it, its first choice with a
# qualifier is more honest than a name that describes other customers.
MAX_FALLBACK_DISTANCE = 1.5

# For ranking, a segment whose (1 + typical value) is less than this ratio above the next lower
# segment's shares its rank: 1.20 orders vs 1.25 orders is no difference worth a whole score step.
TIE_RATIO = 1.10

# Below this ratio between the highest and the lowest segment's (1 + typical value), the segments
# are treated as equal on that measure (all score 3).
MIN_SPREAD = 1.25


def profile_segments(
    rfm: pd.DataFrame, labels: np.ndarray, value: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per segment (sorted by segment_id): size, shares and R, F, M means and medians,
    and with `value` (``customer_value`` of the same customers) the VALUE_PROFILE_COLUMNS.

    `labels` are the segment ids of the rows of `rfm`, in row order. Noise (-1) is not a segment:
    the caller assigns noise customers a segment (via the classifier) before profiling.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(rfm):
        raise ValueError(f"{len(labels)} labels for {len(rfm)} customers")
    if (labels == NOISE).any():
        raise ValueError("noise labels (-1) must be replaced by segment ids before profiling")
    if len(labels) and not np.array_equal(labels, np.round(labels)):
        raise ValueError("segment labels must be whole numbers")
    missing = [c for c in RFM if c not in rfm.columns]
    if missing:
        raise ValueError(f"RFM table lacks column(s) {missing}")

    frame = pd.DataFrame(
        {c: rfm[c].to_numpy(dtype=float) for c in RFM} | {"segment_id": labels.astype(int)}
    )
    groups = frame.groupby("segment_id", sort=True)
    out = groups.agg(
        size=(RECENCY, "size"),
        recency_mean=(RECENCY, "mean"),
        recency_median=(RECENCY, "median"),
        frequency_mean=(FREQUENCY, "mean"),
        frequency_median=(FREQUENCY, "median"),
        monetary_mean=(MONETARY, "mean"),
        monetary_median=(MONETARY, "median"),
    )
    revenue = frame[MONETARY].sum()
    out["customer_share"] = out["size"] / len(frame)
    out["revenue_share"] = groups[MONETARY].sum() / revenue if revenue != 0 else np.nan
    out = out.reset_index()
    out["segment_id"] = out["segment_id"].astype(int)
    out["size"] = out["size"].astype(int)
    out = out[list(PROFILE_COLUMNS)]
    if value is None:
        return out
    by_segment = segment_value(value, pd.Series(labels.astype(int), index=rfm.index))
    out[list(VALUE_PROFILE_COLUMNS)] = by_segment.loc[
        out["segment_id"], ["expected_purchases", "expected_value_per_customer", "p_alive",
                            "value_share"]
    ].to_numpy()  # fmt: skip
    return out


@dataclass(frozen=True)
class NamingRule:
    """One row of the naming table: a name, the R, F, M score ranges it covers (inclusive, 1-5)
    and the scores of the segment it describes best."""

    name: str
    r: tuple[int, int]
    f: tuple[int, int]
    m: tuple[int, int]
    typical: tuple[int, int, int]
    meaning: str

    def matches(self, r: int, f: int, m: int) -> bool:
        return all(lo <= score <= hi for (lo, hi), score in ((self.r, r), (self.f, f), (self.m, m)))


ANY = (1, 5)

# Ordered: the first row whose ranges contain a segment's rounded (R, F, M) scores names it.
# Together the rows cover all 125 score combinations (tested).
NAMING_RULES: tuple[NamingRule, ...] = (
    NamingRule("Champions", (4, 5), (4, 5), (4, 5), (5, 5, 5),
               "Bought recently, buy often and spend the most."),
    NamingRule("Loyal", (3, 5), (4, 5), ANY, (4, 5, 3),
               "Buy often and still buy, but spend less or lapse more than Champions."),
    NamingRule("Can't lose them", (1, 2), (4, 5), (4, 5), (1, 5, 5),
               "Used to buy often and spend the most, but have not been back for a long time."),
    NamingRule("At risk", (1, 2), (3, 5), ANY, (2, 4, 3),
               "Used to buy fairly often, but not for a long time."),
    NamingRule("Big spenders", (3, 5), (1, 2), (5, 5), (4, 2, 5),
               "Few orders but the highest spend (large or wholesale orders); still active."),
    NamingRule("New", (4, 5), (1, 1), ANY, (5, 1, 2),
               "First purchase recently, hardly any orders yet."),
    NamingRule("Potential loyalists", (4, 5), (2, 3), (3, 5), (5, 3, 3),
               "Recent customers with a few orders and fair spend: could become Loyal."),
    NamingRule("Promising", (4, 5), (2, 3), (1, 2), (4, 2, 1),
               "Recent customers with a few orders but little spend so far."),
    NamingRule("Need attention", (3, 3), (3, 3), ANY, (3, 3, 3),
               "Average recency and frequency: may slip away without a nudge."),
    NamingRule("About to sleep", (3, 3), (1, 2), ANY, (3, 2, 2),
               "Last bought a while ago, few orders."),
    NamingRule("Lost", (1, 1), (1, 2), (1, 2), (1, 1, 1),
               "Last bought longest ago, fewest orders, lowest spend."),
    NamingRule("Hibernating", (1, 2), (1, 2), ANY, (2, 2, 2),
               "Last bought long ago, few orders."),
)  # fmt: skip


# Names that tell marketing to spend on winning customers back (step 7 of the module docstring).
CHURN_NAMES = ("Can't lose them", "At risk")


def segment_scores(profile: pd.DataFrame) -> pd.DataFrame:
    """R, F, M scores (1-5, continuous) of each segment relative to the run's other segments."""
    _require(profile, ("segment_id",) + tuple(f"{c}_{s}" for c in RFM for s in ("mean", "median")))
    scores = {
        name: _relative_score(_typical_level(profile, column))
        for name, column in (("r_score", RECENCY), ("f_score", FREQUENCY), ("m_score", MONETARY))
    }
    scores["r_score"] = 6.0 - scores["r_score"]  # recent is good
    return pd.DataFrame({"segment_id": profile["segment_id"].astype(int).to_numpy()} | scores)


def value_scores(profile: pd.DataFrame) -> dict[int, float] | None:
    """Expected value per customer scored 1-5 like M (step 8); None without lifetime value."""
    if "expected_value" not in profile.columns:
        return None
    level = np.log1p(np.clip(profile["expected_value"].to_numpy(dtype=float), 0, None))
    segments = profile["segment_id"].astype(int).tolist()
    return dict(zip(segments, _relative_score(level).tolist(), strict=True))


def _typical_level(profile: pd.DataFrame, column: str) -> np.ndarray:
    """Log of a segment's typical value: halfway (in log space) between its median and mean."""
    median = np.log1p(np.clip(profile[f"{column}_median"].to_numpy(dtype=float), 0, None))
    mean = np.log1p(np.clip(profile[f"{column}_mean"].to_numpy(dtype=float), 0, None))
    return (median + mean) / 2


def _differs(level: np.ndarray) -> bool:
    """Whether segments really differ on a measure: at least two, spread over MIN_SPREAD."""
    return len(level) >= 2 and float(level.max() - level.min()) >= np.log(MIN_SPREAD)


def _relative_score(level: np.ndarray) -> np.ndarray:
    """1-5: mean of the rank score and the min-max position score; all 3 when spread is small."""
    k = len(level)
    if k == 0:
        return np.array([], dtype=float)
    if not _differs(level):
        return np.full(k, 3.0)
    spread = level.max() - level.min()
    by_position = 1 + 4 * (level - level.min()) / spread
    order = np.argsort(level, kind="stable")
    steps = np.diff(level[order]) > np.log(TIE_RATIO)  # a new rank only after a real gap
    ranks = np.empty(k)
    ranks[order] = np.concatenate([[1], 1 + np.cumsum(steps)])
    by_rank = 1 + 4 * (ranks - 1) / (ranks.max() - 1) if ranks.max() > 1 else by_position
    return np.round((by_rank + by_position) / 2, 9)


def _whole(score: float) -> int:
    """Round half up to 1..5 (not banker's rounding: 3.5 reads as 4 to everyone)."""
    return int(min(5, max(1, np.floor(score + 0.5))))


# Words of a descriptive name, by measure and whole-score tier (1-2 low, 3 mid, 4-5 high).
DESCRIPTIVE_WORDS: dict[str, dict[str, str]] = {
    RECENCY: {"low": "lapsed", "mid": "lapsing", "high": "recent"},
    FREQUENCY: {"low": "occasional", "mid": "regular", "high": "frequent"},
    MONETARY: {"low": "small spenders", "mid": "mid spenders", "high": "big spenders"},
}

# Qualifiers of segments sharing a name, per measure, from the lowest typical value to the highest
# (recency in days: the lowest is the most recent).
QUALIFIERS: dict[str, tuple[str, str, str, str, str]] = {
    MONETARY: ("lowest spend", "lower spend", "mid spend", "higher spend", "highest spend"),
    FREQUENCY: ("fewest orders", "fewer orders", "mid frequency", "more orders", "most orders"),
    RECENCY: ("most recent", "more recent", "mid recency", "less recent", "least recent"),
}
# Which of the five qualifiers a group of 2, 3, 4 or 5 segments uses, in order.
_QUALIFIER_PICKS = {2: (1, 3), 3: (0, 2, 4), 4: (0, 1, 3, 4), 5: (0, 1, 2, 3, 4)}


def name_segments(profile: pd.DataFrame) -> dict[int, str]:
    """A unique marketing name per segment id, by the rules in the module docstring."""
    _require(profile, ("segment_id", "size"))
    if profile["segment_id"].duplicated().any():
        raise ValueError("segment profile has duplicate segment_id rows")
    levels = {column: _typical_level(profile, column) for column in RFM}
    segments = profile["segment_id"].astype(int).tolist()
    if all(_differs(level) for level in levels.values()):
        names = _table_names(profile)
        words = _descriptive_names(profile, levels)
        names = {seg: name or words[seg] for seg, name in names.items()}
    else:
        names = _descriptive_names(profile, levels)
    by_measure = {
        column: dict(zip(segments, level.tolist(), strict=True)) for column, level in levels.items()
    }
    return dict(sorted(_distinguish(names, by_measure).items()))


def churn_allowed(profile: pd.DataFrame) -> dict[int, bool]:
    """Per segment: may it carry a churn name (step 7)? All true without lifetime value."""
    segments = profile["segment_id"].astype(int).tolist()
    if "p_alive" not in profile.columns:
        return dict.fromkeys(segments, True)
    alive = profile["p_alive"].to_numpy(dtype=float)
    store_alive = float(np.average(alive, weights=profile["size"].to_numpy(dtype=float)))
    high_spend = [_whole(m) >= 4 for m in segment_scores(profile)["m_score"]]
    return {
        seg: bool(high and p < store_alive)
        for seg, high, p in zip(segments, high_spend, alive, strict=True)
    }


def _descriptive_names(profile: pd.DataFrame, levels: dict[str, np.ndarray]) -> dict[int, str]:
    """Names from the measures on which the segments differ (step 5 of the module docstring)."""
    scores = segment_scores(profile)
    columns = {RECENCY: "r_score", FREQUENCY: "f_score", MONETARY: "m_score"}
    differing = [column for column in RFM if _differs(levels[column])]

    def tier(score: float) -> str:
        whole = _whole(score)
        return "low" if whole <= 2 else "mid" if whole == 3 else "high"

    names = {}
    for row in scores.itertuples(index=False):
        words = [
            DESCRIPTIVE_WORDS[column][tier(getattr(row, columns[column]))]
            for column in (RECENCY, FREQUENCY)
            if column in differing
        ]
        if MONETARY in differing:
            words.append(DESCRIPTIVE_WORDS[MONETARY][tier(row.m_score)])
        else:
            words.append("buyers")
        if len(words) == 1 and words[0] == "buyers":
            words.insert(0, "typical")  # no measure differs: qualifiers do the work
        text = " ".join(words)
        names[int(row.segment_id)] = text[0].upper() + text[1:]
    return names


def _distinguish(names: dict[int, str], levels: dict[str, dict[int, float]]) -> dict[int, str]:
    """Names made unique by qualifiers in words (step 6 of the module docstring)."""
    groups: dict[str, list[int]] = {}
    for segment, name in names.items():
        groups.setdefault(name, []).append(segment)
    out = dict(names)
    for name, members in groups.items():
        if len(members) > 1:
            for segment, words in _qualify(members, levels, list(QUALIFIERS)).items():
                out[segment] = ", ".join([name, *words])
    return out


def _qualify(
    members: Sequence[int], levels: dict[str, dict[int, float]], measures: list[str]
) -> dict[int, list[str]]:
    """Qualifier words that tell `members` apart: by rank on the measure of `measures` on which
    they differ most (ties: spend, then orders, then recency), grouped into at most five."""
    if len(members) == 1 or not measures:
        return {segment: [] for segment in members}

    def spread(column: str) -> float:
        values = [levels[column][segment] for segment in members]
        return round(max(values) - min(values), 9)

    measure = max(measures, key=lambda column: (spread(column), -measures.index(column)))
    ordered = sorted(members, key=lambda segment: (levels[measure][segment], segment))
    chunks = [list(chunk) for chunk in np.array_split(ordered, min(5, len(ordered)))]
    rest = [column for column in measures if column != measure]
    out: dict[int, list[str]] = {}
    for pick, chunk in zip(_QUALIFIER_PICKS[len(chunks)], chunks, strict=True):
        inner = _qualify([int(s) for s in chunk], levels, rest)
        for segment, words in inner.items():
            out[segment] = [QUALIFIERS[measure][pick], *words]
    return out


def _table_names(profile: pd.DataFrame) -> dict[int, str | None]:
    """Names from NAMING_RULES by deferred acceptance (steps 3 and 4 of the module docstring);
    a segment left without a free name shares its first choice; one with no acceptable name at
    all (step 7) gets None."""
    scores = segment_scores(profile)
    sizes = dict(zip(profile["segment_id"].astype(int), profile["size"].astype(int), strict=True))
    points = {
        int(row.segment_id): np.array([row.r_score, row.f_score, row.m_score])
        for row in scores.itertuples(index=False)
    }
    value = value_scores(profile)

    def fit(segment: int, rule: NamingRule) -> tuple[int, float, int, int]:
        """Sort key, lower is a better match of `segment` to `rule`."""
        point = points[segment]
        inside = rule.matches(*(_whole(s) for s in point))
        gaps = point - np.array(rule.typical)
        if value is not None:  # step 8: what they will spend counts like what they spent
            gaps = np.append(gaps, value[segment] - rule.typical[2])
        distance = float(np.linalg.norm(gaps))
        return (0 if inside else 1, round(distance, 9), -sizes[segment], segment)

    rules = {rule.name: rule for rule in NAMING_RULES}
    order = {rule.name: i for i, rule in enumerate(NAMING_RULES)}

    def preference(segment: int, name: str) -> tuple[int, float, int]:
        """Matching rows in table order first, then the others by closeness of typical scores."""
        outside, distance, *_ = fit(segment, rules[name])
        return (outside, distance if outside else 0.0, order[name])

    churn = churn_allowed(profile)

    def acceptable(segment: int, name: str) -> bool:
        if name in CHURN_NAMES and not churn[segment]:
            return False
        outside, distance, *_ = fit(segment, rules[name])
        return not outside or distance <= MAX_FALLBACK_DISTANCE

    candidates = {
        seg: sorted(
            (name for name in rules if acceptable(seg, name)),
            key=lambda name, seg=seg: preference(seg, name),
        )
        for seg in points
    }

    # Deferred acceptance: segments propose names in their order of preference; a name keeps the
    # best-matching proposer. The result does not depend on the order segments are processed in.
    holder: dict[str, int] = {}
    tried = dict.fromkeys(points, 0)
    waiting = deque(sorted(points))
    unnamed: list[int] = []
    while waiting:
        seg = waiting.popleft()
        if tried[seg] == len(candidates[seg]):
            unnamed.append(seg)
            continue
        name = candidates[seg][tried[seg]]
        tried[seg] += 1
        rival = holder.get(name)
        if rival is None:
            holder[name] = seg
        elif fit(seg, rules[name]) < fit(rival, rules[name]):
            holder[name] = seg
            waiting.append(rival)
        else:
            waiting.append(seg)

    names = {seg: name for name, seg in holder.items()}
    names |= {seg: candidates[seg][0] if candidates[seg] else None for seg in unnamed}
    return names


def add_names(profile: pd.DataFrame, names: dict[int, str]) -> pd.DataFrame:
    """A copy of `profile` with a segment_name column right after segment_id."""
    missing = sorted(set(profile["segment_id"].astype(int)) - set(names))
    if missing:
        raise ValueError(f"no name for segment(s) {missing}")
    out = profile.drop(columns=["segment_name"], errors="ignore")
    position = out.columns.get_loc("segment_id") + 1
    out.insert(position, "segment_name", out["segment_id"].astype(int).map(names).astype(str))
    return out


def describe_rules() -> str:
    """The naming table as markdown, for the README and the run report."""

    def span(bounds: tuple[int, int]) -> str:
        lo, hi = bounds
        return "any" if bounds == ANY else (str(lo) if lo == hi else f"{lo}-{hi}")

    lines = [
        "| # | name | R | F | M | typical R F M | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {i} | {rule.name} | {span(rule.r)} | {span(rule.f)} | {span(rule.m)} | "
        f"{' '.join(map(str, rule.typical))} | {rule.meaning} |"
        for i, rule in enumerate(NAMING_RULES, start=1)
    ]
    return "\n".join(lines)


def _require(frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"segment profile lacks column(s) {missing}")
