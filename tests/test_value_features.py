"""Lifetime value in a run: profiles with it, features=value, the shipped models, and a store the
models cannot be fitted on."""

from __future__ import annotations

import cloudpickle
import pandas as pd
import pytest

from src.errors import UserError
from src.evaluation.profile import VALUE_PROFILE_COLUMNS
from src.features.rfm import default_snapshot
from src.pipeline import prepare_data, run_pipeline
from src.tracking.pyfunc import SegmenterModel
from src.tuning.space import require_value_fit
from tests.conftest import RFM_KMEANS, store_records, write_json


@pytest.fixture(scope="module")
def value_run(store_path, make_cfg):
    cfg = make_cfg(f"data.path={store_path}", "tracking=none", "features=value")
    data = prepare_data(cfg, with_figures=False)
    return data, run_pipeline(cfg, data)


def test_value_run_segments_on_value_and_profiles_it(value_run):
    data, result = value_run
    assert result.segmenter.features == ("expected_value", "p_alive", "recency", "frequency")
    assert data.value is not None and data.value.index.equals(data.rfm.index)
    profile = result.profile
    assert profile[list(VALUE_PROFILE_COLUMNS)].notna().all().all()
    assert profile["value_share"].sum() == pytest.approx(1.0)
    # Segment ids are ordered by past spend; the top segment is expected to bring the most too.
    assert profile["expected_value"].iloc[0] == profile["expected_value"].max()
    assert not any("lifetime-value" in note for note in result.notes)


def test_shipped_models_give_a_fresh_export_the_runs_features(value_run, store_path):
    data, result = value_run
    segmenter = cloudpickle.loads(cloudpickle.dumps(result.segmenter))  # as the model ships
    assert segmenter.value_model == data.value_model
    raw = pd.read_json(store_path, dtype=False)
    ids = set(data.rfm.index[:40])
    few = raw[raw["CustomerID"].astype(str).isin(ids)]
    snapshot = default_snapshot(data.transactions)
    model = SegmenterModel(segmenter)
    out = model.predict(None, few, params={"snapshot_date": str(snapshot.date())})
    # The same customers, seen at the same snapshot, get the training run's lifetime values and
    # so the classifier's segment for the run's own feature values.
    values = segmenter.value_model.predict(data.transactions, snapshot)
    pd.testing.assert_frame_equal(values, data.value.loc[values.index], check_like=True)
    expected = result.segments.set_index("customer_id").loc[out["customer_id"]]
    agree = (out["segment_id"].to_numpy() == expected["segment_id"].to_numpy()).mean()
    assert len(out) == 40 and agree >= 0.9


def test_rfm_run_profiles_lifetime_value_without_segmenting_on_it(store_path, make_cfg):
    cfg = make_cfg(f"data.path={store_path}", "tracking=none", *RFM_KMEANS)
    data = prepare_data(cfg, with_figures=False)
    result = run_pipeline(cfg, data)
    assert result.segmenter.features == ("recency", "frequency", "monetary")
    assert result.segmenter.value_model is None  # nothing to ship: no value feature
    assert set(VALUE_PROFILE_COLUMNS) <= set(result.profile.columns)


@pytest.fixture(scope="module")
def one_time_buyers(tmp_path_factory):
    records, _ = store_records(seed=5)
    first: dict[int, int] = {}
    kept = [r for r in records if first.setdefault(r["CustomerID"], r["order_id"]) == r["order_id"]]
    return write_json(tmp_path_factory.mktemp("once") / "export.json", kept)


def test_a_store_without_repeat_buyers_runs_on_rfm_with_one_note(one_time_buyers, make_cfg, caplog):
    cfg = make_cfg(f"data.path={one_time_buyers}", "tracking=none", *RFM_KMEANS)
    with caplog.at_level("WARNING", logger="src.pipeline"):
        data = prepare_data(cfg, with_figures=False)
    assert data.value is None and data.value_model is None
    logged = [r.getMessage() for r in caplog.records if "lifetime-value" in r.getMessage()]
    assert logged == [data.value_note()]
    assert "repeat purchase" in data.value_error
    result = run_pipeline(cfg, data)
    assert not set(VALUE_PROFILE_COLUMNS) & set(result.profile.columns)
    assert not result.profile.isna().any().any()
    assert data.value_note() in result.notes


def test_the_default_run_on_such_a_store_tiers_past_spend_with_one_note(one_time_buyers, make_cfg):
    cfg = make_cfg(f"data.path={one_time_buyers}", "tracking=none")  # features=value
    data = prepare_data(cfg, with_figures=False)
    result = run_pipeline(cfg, data)
    (note,) = result.notes
    assert note == (
        "segmented on ['monetary', 'recency', 'frequency'], all logged "
        "(features.fallback_columns), instead of ['expected_value', 'p_alive', 'recency', "
        f"'frequency']: {data.value_error}"
    )
    assert result.segmenter.features == ("monetary", "recency", "frequency")
    assert result.segmenter.value_model is None
    assert not set(VALUE_PROFILE_COLUMNS) & set(result.profile.columns)
    # Tiers of past spend: every customer of a higher tier spent more than any of a lower one.
    spend = data.rfm["monetary"].groupby(result.segments.set_index("customer_id")["segment_id"])
    assert (spend.min().to_numpy()[:-1] >= spend.max().to_numpy()[1:]).all()


def test_features_value_on_such_a_store_is_refused_before_any_run(one_time_buyers, make_cfg):
    cfg = make_cfg(
        f"data.path={one_time_buyers}", "tracking=none", "features.fallback_columns=null"
    )
    with pytest.raises(UserError, match=r"features=value .*repeat purchase.*use features=rfm"):
        prepare_data(cfg, with_figures=False)
    # A sweep prepares its data with the base features: a trial picking value fails clearly.
    base = make_cfg(f"data.path={one_time_buyers}", "tracking=none", *RFM_KMEANS)
    data = prepare_data(base, False)
    with pytest.raises(UserError, match="features=value"):
        run_pipeline(cfg, data)
    with pytest.raises(UserError, match=r"sweep.features lists value: .*repeat purchase"):
        require_value_fit(["rfm", "value"], data.value_error)
    require_value_fit(["rfm"], data.value_error)  # rfm alone needs no fit
