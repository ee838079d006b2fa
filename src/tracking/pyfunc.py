"""The registered model: an MLflow pyfunc around the project's Segmenter.

Input: a transactions table with the training export's column names (values may be numbers or 1C
strings, hence `Any` columns). Output: one row per customer with customer_id, segment_id,
segment_name. Param `snapshot_date` (ISO date) sets the date recency is measured to; by default it
is the day after the input's last transaction. Param `columns`, a JSON object of role -> column
(``{"amount": "Total"}``), maps an input whose headers differ from the training export's.
"""

from __future__ import annotations

import json
import logging
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

from src.data.schema import REQUIRED
from src.errors import UserError
from src.models.segmenter import Segmenter

SRC_DIR = Path(__file__).resolve().parents[1]


class SegmenterModel(mlflow.pyfunc.PythonModel):
    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):  # noqa: ANN001
        snapshot = (params or {}).get("snapshot_date") or None
        columns = (params or {}).get("columns") or None
        try:
            return self.segmenter.segment(
                pd.DataFrame(model_input),
                snapshot=pd.Timestamp(snapshot) if snapshot else None,
                source="model input",
                columns=_column_overrides(columns) if columns else None,
            )
        except (UserError, ValueError) as err:
            # A bad request, not a server fault: `mlflow models serve` answers 400 with this text.
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from err


def _column_overrides(text: str) -> dict[str, str | None]:
    try:
        columns = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"param columns={text!r}: not JSON ({err.msg})") from None
    if not isinstance(columns, dict):
        raise UserError(f'param columns={text!r}: expected a JSON object {{"role": "column"}}')
    return columns


def signature_for(segmenter: Segmenter) -> ModelSignature:
    required = {segmenter.columns[role] for role in REQUIRED if segmenter.columns.get(role)}
    if not segmenter.columns.get("amount"):
        required |= {segmenter.columns["quantity"], segmenter.columns["price"]}
    inputs = Schema(
        [
            ColSpec(AnyType(), name, required=name in required)
            for role, name in segmenter.columns.items()
            if name
        ]
    )
    outputs = Schema(
        [
            ColSpec("string", "customer_id"),
            ColSpec("long", "segment_id"),
            ColSpec("string", "segment_name"),
        ]
    )
    params = ParamSchema(
        [ParamSpec("snapshot_date", "string", ""), ParamSpec("columns", "string", "")]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


# What the model needs at prediction time (the project's own code travels in code_paths).
# Listed, not inferred: MLflow's inference starts a subprocess that re-imports everything (5 s
# of a 9 s sweep trial).
RUNTIME_PACKAGES = (
    "mlflow",
    "pandas",
    "numpy",
    "scikit-learn",
    "scipy",
    "xgboost",
    "pyarrow",
    "cloudpickle",
)


def pip_requirements() -> list[str]:
    return [f"{name}=={version(name)}" for name in RUNTIME_PACKAGES]


def log_segmenter(segmenter: Segmenter, input_example: pd.DataFrame, name: str) -> str:
    """Log the segmenter to the active run as the model `name`; returns the model URI."""
    # MLflow warns on every log that a Python object is serialised with cloudpickle; the
    # segmenter is our own frozen dataclass of scikit-learn objects, loaded with the code logged
    # alongside it (code_paths), so the warning is noise for our users.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=SegmenterModel(segmenter),
        code_paths=[str(SRC_DIR)],
        signature=signature_for(segmenter),
        input_example=input_example,
        pip_requirements=pip_requirements(),
    )
    return info.model_uri
