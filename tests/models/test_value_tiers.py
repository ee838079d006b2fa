import numpy as np
import pytest

from src.errors import UserError
from src.evaluation.validation import eta_squared
from src.models.value_tiers import ValueTiers


def pyramid(seed: int = 0, n: int = 2000) -> np.ndarray:
    """Heavy-tailed values: most customers small, a few far larger."""
    rng = np.random.default_rng(seed)
    return rng.lognormal(mean=3.0, sigma=1.2, size=n)


def test_tiers_are_contiguous_highest_first_and_respect_min_share():
    values = pyramid()
    labels = ValueTiers(n_clusters=5, min_share=0.02, power=1.0).fit(values[:, None]).labels_
    assert sorted(set(labels)) == [0, 1, 2, 3, 4]
    assert (np.bincount(labels) >= np.ceil(0.02 * len(values))).all()
    # contiguous along the value: every customer of tier t is worth more than any of tier t+1
    for tier in range(4):
        assert values[labels == tier].min() > values[labels == tier + 1].max()
    # with power 1 the optimum puts the money in small top tiers over one large bottom tier
    shares = np.bincount(labels) / len(labels)
    assert shares[0] < 0.1 and shares[-1] > 0.4


def test_natural_breaks_beat_equal_share_tiers_on_the_spread_they_maximise():
    values = pyramid(1)
    labels = ValueTiers(n_clusters=5, min_share=0.02, power=1.0).fit(values[:, None]).labels_
    ranks = np.argsort(np.argsort(-values))
    quintiles = ranks * 5 // len(values)
    assert eta_squared(values, labels) > eta_squared(values, quintiles) + 0.1


def test_equal_values_share_a_tier():
    values = np.repeat([1.0, 2.0, 3.0, 50.0, 100.0], [400, 300, 200, 60, 40])
    labels = ValueTiers(n_clusters=5, min_share=0.02).fit(values[:, None]).labels_
    for value in np.unique(values):
        assert len(set(labels[values == value])) == 1
    assert len(set(labels)) == 5


def test_predict_places_new_customers_by_the_fitted_thresholds():
    values = pyramid(2)
    tiers = ValueTiers(n_clusters=4, power=0.5).fit(values[:, None])
    np.testing.assert_array_equal(tiers.predict(values[:, None]), tiers.labels_)
    assert tiers.predict(np.array([[values.max() * 10], [0.0]])).tolist() == [0, 3]


def test_affine_scaling_changes_nothing():
    values = pyramid(3)
    a = ValueTiers(power=0.5).fit(values[:, None]).labels_
    b = ValueTiers(power=0.5).fit((values[:, None] - 40.0) / 17.0).labels_
    np.testing.assert_array_equal(a, b)


def test_tiers_a_chosen_column():
    values = pyramid(4)
    X = np.column_stack([np.zeros_like(values), values])
    labels = ValueTiers(column=1).fit(X).labels_
    np.testing.assert_array_equal(labels, ValueTiers().fit(values[:, None]).labels_)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"n_clusters": 5, "min_share": 0.3}, r"clusterer\.min_share=0\.3"),
        ({"column": 3}, r"clusterer\.column=3"),
        ({"power": 0.0}, r"clusterer\.power=0\.0"),
    ],
)
def test_impossible_settings_name_the_setting(settings, match):
    with pytest.raises(UserError, match=match):
        ValueTiers(**settings).fit(pyramid()[:, None])


def test_too_few_distinct_values_for_the_tiers_is_a_user_error():
    values = np.repeat([1.0, 2.0], [500, 500])
    with pytest.raises(UserError, match=r"2 distinct values cannot make clusterer\.n_clusters=5"):
        ValueTiers(n_clusters=5).fit(values[:, None])
