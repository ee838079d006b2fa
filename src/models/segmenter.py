"""The deployable segmenter: a fresh export in, one segment per customer out.

It bundles everything needed to segment transactions it has never seen: the export's column
mapping and parsing settings, the cleaning rules, the RFM settings with the fitted transform, the
trained classifier and the segment names. New customers always go through the classifier, never
through a transductive reducer or clusterer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from src.data.clean import clean_transactions
from src.data.load import to_canonical
from src.errors import UserError
from src.features.rfm import compute_rfm

OUTPUT_COLUMNS = ("customer_id", "segment_id", "segment_name")


@dataclass(frozen=True)
class Segmenter:
    columns: dict[str, str | None]
    dayfirst: bool
    max_bad_share: float
    clean_rules: dict[str, Any]
    extras: tuple[str, ...]
    features: tuple[str, ...]
    transformer: Any
    classifier: Any
    segment_names: dict[int, str]

    def segment(
        self, export: pd.DataFrame, snapshot: pd.Timestamp | None = None, source: str = "input"
    ) -> pd.DataFrame:
        """One row per customer of `export` (raw columns as in the training export).

        `snapshot` is the date recency is measured to; default: the day after the export's last
        transaction. Pass it explicitly when `export` holds only a few customers' lines.
        """
        transactions = to_canonical(
            export,
            self.columns,
            source=source,
            max_bad_share=self.max_bad_share,
            dayfirst=self.dayfirst,
        )
        clean, _ = clean_transactions(transactions, self.clean_rules)
        if clean.empty:
            raise UserError(f"{source}: no transactions left after cleaning; nothing to segment")
        rfm = compute_rfm(clean, snapshot=snapshot, extras=self.extras)
        X = np.asarray(self.transformer.transform(rfm[list(self.features)]), dtype=float)
        ids = np.asarray(self.classifier.predict(X), dtype=int)
        return pd.DataFrame(
            {
                "customer_id": rfm.index.astype(str).to_numpy(),
                "segment_id": ids,
                "segment_name": [self.segment_names[i] for i in ids],
            }
        )
