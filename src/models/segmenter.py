"""The deployable segmenter: a fresh export in, one segment per customer out.

It bundles everything needed to segment transactions it has never seen: the column mapping it
was trained with (role -> column; a fresh export's headers are matched to it ignoring case and
spaces, then by the usual aliases, and `columns` overrides win), the parsing settings, the cleaning rules, the RFM settings with the fitted transform, the
lifetime-value models fitted on the training customers (for value features), the trained
classifier and the segment names. New customers always go through the classifier, never
through a transductive reducer or clusterer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from src.data.clean import clean_transactions
from src.data.load import LoadSettings, to_canonical
from src.errors import UserError
from src.features.rfm import compute_rfm, default_snapshot
from src.features.value import ValueModel, feature_table, needs_value

OUTPUT_COLUMNS = ("customer_id", "segment_id", "segment_name")


@dataclass(frozen=True)
class Segmenter:
    columns: dict[str, str]
    load_settings: LoadSettings
    clean_rules: dict[str, Any]
    extras: tuple[str, ...]
    features: tuple[str, ...]
    transformer: Any
    classifier: Any
    segment_names: dict[int, str]
    value_model: ValueModel | None = None  # set when `features` has lifetime-value columns

    def segment(
        self,
        export: pd.DataFrame,
        snapshot: pd.Timestamp | None = None,
        source: str = "input",
        columns: dict[str, str | None] | None = None,
    ) -> pd.DataFrame:
        """One row per customer of `export` (raw columns as in the training export).

        `snapshot` is the date recency is measured to; default: the day after the export's last
        transaction. Pass it explicitly when `export` holds only a few customers' lines.
        `columns` (role -> column, ``data.columns.*``) maps an export whose headers differ.
        """
        settings = replace(self.load_settings, columns=columns or {})
        transactions, _ = to_canonical(export, settings, source, remembered=self.columns)
        clean, _ = clean_transactions(transactions, self.clean_rules)
        if clean.empty:
            raise UserError(f"{source}: no transactions left after cleaning; nothing to segment")
        snapshot = default_snapshot(clean) if snapshot is None else snapshot
        rfm = compute_rfm(clean, snapshot=snapshot, extras=self.extras)
        value = None
        if needs_value(self.features):
            if self.value_model is None:
                raise ValueError(f"features {self.features} need the lifetime-value model")
            value = self.value_model.predict(clean, snapshot)
        table = feature_table(rfm, value, self.features)
        X = np.asarray(self.transformer.transform(table), dtype=float)
        ids = np.asarray(self.classifier.predict(X), dtype=int)
        return pd.DataFrame(
            {
                "customer_id": rfm.index.astype(str).to_numpy(),
                "segment_id": ids,
                "segment_name": [self.segment_names[i] for i in ids],
            }
        )
