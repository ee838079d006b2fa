import itertools
import re

import numpy as np
import pandas as pd
import pytest

from src.evaluation.profile import (
    CHURN_NAMES,
    NAMING_RULES,
    PROFILE_COLUMNS,
    VALUE_PROFILE_COLUMNS,
    add_names,
    describe_rules,
    name_segments,
    profile_segments,
    segment_scores,
)

VOCABULARY = {rule.name for rule in NAMING_RULES}


def small_rfm() -> tuple[pd.DataFrame, np.ndarray]:
    """Eight customers in three segments, labels deliberately interleaved."""
    rfm = pd.DataFrame(
        {
            "recency": [10.0, 100, 20, 200, 30, 300, 5, 400],
            "frequency": [5.0, 1, 3, 1, 4, 2, 10, 1],
            "monetary": [500.0, 100, 300, 50, 400, 150, 1500, 200],
        },
        index=pd.Index([f"c{i}" for i in range(8)], name="customer_id"),
    )
    labels = np.array([1, 0, 1, 0, 1, 0, 2, 0])
    return rfm, labels


def make_profile(rows: list[tuple[float, float, float]], sizes: list[int] | None = None):
    """A profile whose segments have the given typical (recency, frequency, monetary)."""
    sizes = sizes or [100] * len(rows)
    r, f, m = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    return pd.DataFrame(
        {
            "segment_id": np.arange(len(rows)),
            "size": sizes,
            "customer_share": np.array(sizes) / sum(sizes),
            "revenue_share": m * sizes / (m * sizes).sum(),
            "recency_mean": r,
            "recency_median": r,
            "frequency_mean": f,
            "frequency_median": f,
            "monetary_mean": m,
            "monetary_median": m,
        }
    )


# --- profile_segments -----------------------------------------------------------------------------


def test_profile_arithmetic_hand_computed():
    rfm, labels = small_rfm()
    profile = profile_segments(rfm, labels)
    assert list(profile.columns) == list(PROFILE_COLUMNS)
    assert profile["segment_id"].tolist() == [0, 1, 2]
    assert profile["size"].tolist() == [4, 3, 1]
    np.testing.assert_allclose(profile["customer_share"], [4 / 8, 3 / 8, 1 / 8])
    # monetary sums 500, 1200, 1500 of 3200
    np.testing.assert_allclose(profile["revenue_share"], [500 / 3200, 1200 / 3200, 1500 / 3200])
    np.testing.assert_allclose(profile["recency_mean"], [250, 20, 5])
    np.testing.assert_allclose(profile["recency_median"], [250, 20, 5])  # even count: (200+300)/2
    np.testing.assert_allclose(profile["frequency_mean"], [1.25, 4, 10])
    np.testing.assert_allclose(profile["frequency_median"], [1, 4, 10])
    np.testing.assert_allclose(profile["monetary_mean"], [125, 400, 1500])
    np.testing.assert_allclose(profile["monetary_median"], [125, 400, 1500])
    assert profile["customer_share"].sum() == pytest.approx(1.0)
    assert profile["revenue_share"].sum() == pytest.approx(1.0)


def test_profile_ignores_extra_columns_and_does_not_mutate_input():
    rfm, labels = small_rfm()
    rfm = rfm.assign(tenure=np.arange(8.0))
    before = rfm.copy()
    profile = profile_segments(rfm, labels)
    pd.testing.assert_frame_equal(rfm, before)
    assert "tenure_mean" not in profile.columns
    assert len(profile) == 3


def test_profile_rejects_noise_and_misaligned_labels():
    rfm, labels = small_rfm()
    with_noise = labels.copy()
    with_noise[0] = -1
    with pytest.raises(ValueError, match="noise"):
        profile_segments(rfm, with_noise)
    with pytest.raises(ValueError, match="7 labels for 8 customers"):
        profile_segments(rfm, labels[:-1])


def test_profile_sizes_sum_to_customers_on_random_data():
    rng = np.random.default_rng(0)
    rfm = pd.DataFrame(
        {
            "recency": rng.integers(0, 700, 1000).astype(float),
            "frequency": rng.integers(1, 20, 1000).astype(float),
            "monetary": rng.lognormal(8, 1, 1000),
        }
    )
    labels = rng.integers(0, 6, 1000)
    profile = profile_segments(rfm, labels)
    assert profile["size"].sum() == 1000
    assert profile["revenue_share"].sum() == pytest.approx(1.0)
    seg3 = rfm[labels == 3]
    assert profile.loc[3, "monetary_median"] == pytest.approx(seg3["monetary"].median())
    assert profile.loc[3, "revenue_share"] == pytest.approx(
        seg3["monetary"].sum() / rfm["monetary"].sum()
    )


# --- scores ---------------------------------------------------------------------------------------


def test_scores_two_segments_are_the_extremes_and_recency_is_inverted():
    profile = make_profile([(10, 8, 50_000), (300, 1, 2_000)])
    scores = segment_scores(profile)
    assert scores["r_score"].tolist() == [5.0, 1.0]  # 10 days ago is the better recency
    assert scores["f_score"].tolist() == [5.0, 1.0]
    assert scores["m_score"].tolist() == [5.0, 1.0]


def test_scores_without_real_difference_are_neutral():
    # frequency 1.0 vs 1.1 and monetary 2,000 vs 2,200: under 25% apart -> both score 3
    profile = make_profile([(10, 1.0, 2_000), (300, 1.1, 2_200)])
    scores = segment_scores(profile)
    assert scores["f_score"].tolist() == [3.0, 3.0]
    assert scores["m_score"].tolist() == [3.0, 3.0]
    assert scores["r_score"].tolist() == [5.0, 1.0]


def test_scores_blend_rank_and_position():
    # monetary 100, 1_000, 1_000_000 (+1 on the log scale is negligible): the middle segment is
    # second by rank (score 3) but near the bottom by log-position (~1.67); the score averages them
    profile = make_profile([(10, 1, 100), (20, 2, 1_000), (30, 3, 1_000_000)])
    m = segment_scores(profile)["m_score"].to_numpy()
    level = np.log1p([100, 1_000, 1_000_000])
    position = 1 + 4 * (level[1] - level[0]) / (level[2] - level[0])
    assert m[0] == 1.0
    assert m[2] == 5.0
    assert m[1] == pytest.approx((3 + position) / 2)


def test_scores_near_equal_values_share_a_rank():
    # 1.20 and 1.25 orders are no real difference: both stay at the bottom of the F scale
    profile = make_profile(
        [(400, 1.20, 1_900), (13, 1.25, 2_800), (60, 5, 18_000), (9, 14, 60_000)]
    )
    f = segment_scores(profile)["f_score"].to_numpy()
    assert f[0] == 1.0
    assert f[1] < 1.5
    assert name_segments(profile) == {0: "Lost", 1: "New", 2: "Need attention", 3: "Champions"}


def test_typical_value_sits_between_median_and_mean():
    base = make_profile([(10, 1, 2_000), (300, 1, 2_000)])
    # medians tie at 1 order; a mean of 1.6 vs 1.0 alone is not a real difference...
    slight = base.assign(frequency_mean=[1.0, 1.6])
    assert segment_scores(slight)["f_score"].tolist() == [3.0, 3.0]
    # ...but 3.0 vs 1.1 is, although the medians are equal
    strong = base.assign(frequency_mean=[3.0, 1.1])
    assert segment_scores(strong)["f_score"].tolist() == [5.0, 1.0]


# --- naming ---------------------------------------------------------------------------------------

PLANTED = {
    "champions": (5, 20, 200_000),  # very recent, frequent, high spend
    "lost": (600, 1, 800),  # long ago, one order, low spend
    "new": (3, 1, 1_500),  # very recent, one order
    "gone_quiet": (400, 15, 150_000),  # formerly frequent high spenders
    "middle": (60, 4, 20_000),
}


def test_planted_segments_get_their_classic_names():
    profile = make_profile(list(PLANTED.values()))
    names = dict(zip(PLANTED, name_segments(profile).values(), strict=True))
    assert names["champions"] == "Champions"
    assert names["lost"] == "Lost"
    assert names["new"] == "New"
    assert names["gone_quiet"] in {"Can't lose them", "At risk"}
    assert names["middle"] not in {"Champions", "Lost", "New"}


def with_p_alive(profile: pd.DataFrame, p_alive: list[float]) -> pd.DataFrame:
    return profile.assign(p_alive=p_alive)


def test_churn_names_need_high_spend_and_falling_p_alive():
    rows = list(PLANTED.values())  # gone_quiet (index 3): R low, F high, M high
    falling = name_segments(with_p_alive(make_profile(rows), [0.95, 0.99, 1.0, 0.40, 0.9]))
    assert falling[3] in CHURN_NAMES
    # Same behaviour, but the purchase model says they still buy: no win-back name.
    still_alive = name_segments(with_p_alive(make_profile(rows), [0.95, 0.5, 1.0, 0.99, 0.9]))
    assert still_alive[3] not in CHURN_NAMES
    assert still_alive[3] == "Lapsed frequent big spenders"
    assert [still_alive[i] for i in (0, 1, 2)] == ["Champions", "Lost", "New"]


def test_low_spenders_are_never_at_risk_whatever_their_p_alive():
    # Segment 2: long gone, fairly frequent, but the lowest spend (M score 1).
    rows = [(5, 20, 200_000), (600, 1, 900), (300, 8, 800), (30, 3, 20_000)]
    without = name_segments(make_profile(rows))
    assert without[2] == "At risk"
    named = name_segments(with_p_alive(make_profile(rows), [0.97, 0.99, 0.2, 0.95]))
    assert named[2] not in CHURN_NAMES
    assert len(set(named.values())) == len(named)
    assert not any(ch.isdigit() for name in named.values() for ch in name)


def test_expected_value_decides_which_top_tier_is_champions():
    # The synthetic store's five value tiers (typical R days, F orders, M rubles): the top tier
    # of wholesale buyers has fewer, far larger orders than the tier below; both lie inside
    # "Champions" on R, F and M, and the tier below is closer to its typical scores.
    rows = [(57, 10.9, 1_580_000), (37, 19.1, 184_000), (48, 6.5, 36_300),
            (197, 5.9, 21_600), (593, 1.6, 6_580)]  # fmt: skip
    sizes = [110, 468, 1215, 1484, 1708]
    without = name_segments(make_profile(rows, sizes))
    assert (without[0], without[1]) == ("Loyal", "Champions")
    value = make_profile(rows, sizes).assign(
        expected_value=[155_042, 18_558, 4_788, 2_170, 693], p_alive=[0.95] * 5
    )
    named = name_segments(value)
    assert (named[0], named[1]) == ("Champions", "Loyal")
    assert named[4] == "Lost"


def test_profile_with_lifetime_value_hand_computed():
    rfm, labels = small_rfm()
    value = pd.DataFrame(
        {
            "p_alive": [0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 1.0, 0.5],
            "expected_purchases": [2.0, 0.0, 1.0, 0.5, 3.0, 0.5, 4.0, 1.0],
            "expected_spend": [100.0] * 8,
            "expected_value": [200.0, 0.0, 100.0, 50.0, 300.0, 50.0, 400.0, 100.0],
        },
        index=rfm.index[::-1],  # aligned by customer, not by position
    )
    profile = profile_segments(rfm, labels, value)
    assert list(profile.columns) == list(PROFILE_COLUMNS) + list(VALUE_PROFILE_COLUMNS)
    # customers by segment: 0 = c1 c3 c5 c7, 1 = c0 c2 c4, 2 = c6 (value rows are reversed)
    by_customer = value.loc[rfm.index]
    for segment, members in {0: [1, 3, 5, 7], 1: [0, 2, 4], 2: [6]}.items():
        rows = by_customer.iloc[members]
        row = profile.loc[profile["segment_id"] == segment].iloc[0]
        assert row["p_alive"] == pytest.approx(rows["p_alive"].mean())
        assert row["expected_purchases"] == pytest.approx(rows["expected_purchases"].mean())
        assert row["expected_value"] == pytest.approx(rows["expected_value"].mean())
        assert row["value_share"] == pytest.approx(rows["expected_value"].sum() / 1200.0)
    assert profile["value_share"].sum() == pytest.approx(1.0)


def test_big_spenders_with_few_orders():
    profile = make_profile(
        [
            (8, 15, 70_000),
            (30, 6, 18_000),
            (13, 1, 2_800),
            (200, 5, 20_000),
            (440, 1, 1_600),
            (40, 1.5, 90_000),
        ]  # fmt: skip
    )
    assert name_segments(profile)[5] == "Big spenders"


def test_two_segments():
    assert name_segments(make_profile([(300, 1, 2_000), (10, 8, 50_000)])) == {
        0: "Lost",
        1: "Champions",
    }


def test_twelve_segments_get_unique_names_and_extremes_keep_theirs():
    rows = [
        (5, 20, 200_000), (25, 9, 40_000), (300, 12, 150_000), (200, 5, 15_000),
        (35, 1.5, 300_000), (4, 1, 1_500), (15, 3, 12_000), (12, 2, 2_000),
        (60, 3, 8_000), (90, 1.5, 2_500), (650, 1, 600), (250, 1.5, 2_000),
    ]  # fmt: skip
    names = name_segments(make_profile(rows))
    assert len(names) == 12
    assert len(set(names.values())) == 12
    assert set(names.values()) <= VOCABULARY
    assert names[0] == "Champions"
    assert names[2] == "Can't lose them"
    assert names[4] == "Big spenders"
    assert names[5] == "New"
    assert names[10] == "Lost"


def test_identical_segments_get_unique_names_without_numbers():
    profile = make_profile([(60, 3, 10_000)] * 8, sizes=[10, 11, 12, 17, 13, 14, 15, 16])
    names = name_segments(profile)
    assert len(set(names.values())) == 8
    # no measure differs: nothing in the table fits, the qualifiers tell them apart
    assert all(name.startswith("Typical buyers, ") for name in names.values())
    assert not any(re.search(r"\d", name) for name in names.values())


def test_more_segments_than_names_get_qualifiers_not_numbers():
    rows = [(5 + 40 * i, 1 + (i % 5), 1_000 * (1 + i)) for i in range(14)]
    names = name_segments(make_profile(rows))
    assert len(set(names.values())) == 14
    assert not any(re.search(r"\d", name) for name in names.values())
    qualified = [n for n in names.values() if ", " in n]
    assert len(qualified) >= 2
    assert all(n.split(", ")[0] in VOCABULARY for n in names.values())


def test_segments_sharing_a_name_are_split_by_the_measure_they_differ_on_most():
    # three near-identical lapsed, one-order segments next to active ones: the second and third
    # must not borrow a name that describes active customers
    rows = [(5, 15, 80_000), (30, 6, 20_000), (12, 1, 2_500), (480, 1, 1_200), (500, 1, 1_250),
            (520, 1, 1_300)]  # fmt: skip
    names = name_segments(make_profile(rows))
    assert [names[i] for i in (3, 4, 5)] == [
        "Lost, lower spend",
        "Lost, higher spend",
        "Hibernating",
    ]


def test_two_segments_wanting_one_name_both_get_a_qualifier():
    # 0 and 1 are both champions (recent, frequent, big spend); Loyal suits 2 better than 1
    rows = [(10, 12, 90_000), (12, 11, 30_000), (14, 10, 10_000), (400, 1, 500)]
    names = name_segments(make_profile(rows))
    assert names == {
        0: "Champions, higher spend",
        1: "Champions, lower spend",
        2: "Loyal",
        3: "Lost",
    }


def test_more_than_five_segments_sharing_a_name_are_qualified_on_a_second_measure():
    # seven segments that hardly differ at all: one name, split by spend into five groups, the
    # groups of two split again by orders
    rows = [(30, 3 + 0.01 * i, 10_000 * (1 + 0.01 * i)) for i in range(7)]
    assert name_segments(make_profile(rows)) == {
        0: "Typical buyers, lowest spend, fewer orders",
        1: "Typical buyers, lowest spend, more orders",
        2: "Typical buyers, lower spend, fewer orders",
        3: "Typical buyers, lower spend, more orders",
        4: "Typical buyers, mid spend",
        5: "Typical buyers, higher spend",
        6: "Typical buyers, highest spend",
    }


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (  # a store whose purchases all fall on one day: recency says nothing
            [(0, 1 + i % 3, 500 * (1 + i)) for i in range(6)],
            ["Occasional small spenders", "Regular small spenders", "Frequent mid spenders",
             "Occasional big spenders", "Regular big spenders", "Frequent big spenders"],
        ),
        (  # one-time buyers only: frequency says nothing
            [(10 + 100 * i, 1, 500 * (1 + i)) for i in range(5)],
            ["Recent small spenders", "Lapsing small spenders", "Lapsed mid spenders",
             "Lapsed big spenders, more recent", "Lapsed big spenders, less recent"],
        ),
        (  # one day, one order each: only spend differs
            [(0, 1, 500 * 3**i) for i in range(4)],
            ["Small spenders, lower spend", "Small spenders, higher spend",
             "Big spenders, lower spend", "Big spenders, higher spend"],
        ),
    ],
)  # fmt: skip
def test_a_measure_without_differences_is_left_out_of_the_names(rows, expected):
    assert list(name_segments(make_profile(rows)).values()) == expected


def test_naming_is_deterministic_and_independent_of_row_order():
    rows = list(PLANTED.values()) + [(30, 6, 25_000), (150, 2, 4_000)]
    profile = make_profile(rows)
    first = name_segments(profile)
    assert name_segments(profile) == first
    shuffled = profile.sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert name_segments(shuffled) == first


def test_naming_end_to_end_from_customers():
    rng = np.random.default_rng(0)
    groups = {0: (8, 15, 5_000), 1: (500, 1, 1_500), 2: (10, 1, 2_000), 3: (300, 8, 6_000)}
    parts, labels = [], []
    for segment, (r, f, per_order) in groups.items():
        n = 200
        freq = 1 + rng.poisson(f - 1, n)
        parts.append(
            pd.DataFrame(
                {
                    "recency": rng.lognormal(np.log(r), 0.4, n),
                    "frequency": freq.astype(float),
                    "monetary": freq * rng.lognormal(np.log(per_order), 0.4, n),
                }
            )
        )
        labels += [segment] * n
    profile = profile_segments(pd.concat(parts, ignore_index=True), np.array(labels))
    names = name_segments(profile)
    assert names[0] == "Champions"
    assert names[1] == "Lost"
    assert names[2] == "New"
    assert names[3] in {"Can't lose them", "At risk"}


def test_name_segments_rejects_duplicate_ids():
    profile = make_profile([(5, 5, 5_000), (50, 1, 500)]).assign(segment_id=[1, 1])
    with pytest.raises(ValueError, match="duplicate"):
        name_segments(profile)


# --- the rule table -------------------------------------------------------------------------------


def test_rules_cover_every_score_combination():
    for r, f, m in itertools.product(range(1, 6), repeat=3):
        assert any(rule.matches(r, f, m) for rule in NAMING_RULES), (r, f, m)


def test_each_rule_names_its_own_typical_segment():
    for rule in NAMING_RULES:
        first = next(other for other in NAMING_RULES if other.matches(*rule.typical))
        assert first.name == rule.name


def test_rule_names_are_unique_and_classic():
    names = [rule.name for rule in NAMING_RULES]
    assert len(names) == len(set(names))
    assert {"Champions", "Loyal", "New", "At risk", "Can't lose them", "Lost"} <= set(names)


def test_describe_rules_is_a_markdown_table_of_every_rule():
    text = describe_rules()
    lines = text.splitlines()
    assert lines[0].startswith("| # | name | R | F | M |")
    assert len(lines) == len(NAMING_RULES) + 2
    assert lines[2] == (
        "| 1 | Champions | 4-5 | 4-5 | 4-5 | 5 5 5 | Bought recently, buy often and spend the most. |"
    )
    for rule in NAMING_RULES:
        assert f"| {rule.name} |" in text


def test_add_names_puts_the_column_after_segment_id():
    rfm, labels = small_rfm()
    profile = profile_segments(rfm, labels)
    before = profile.copy()
    named = add_names(profile, {0: "Lost", 1: "Loyal", 2: "Champions"})
    assert list(named.columns[:2]) == ["segment_id", "segment_name"]
    assert named["segment_name"].tolist() == ["Lost", "Loyal", "Champions"]
    pd.testing.assert_frame_equal(profile, before)
    with pytest.raises(ValueError, match=r"\[2\]"):
        add_names(profile, {0: "Lost", 1: "Loyal"})
