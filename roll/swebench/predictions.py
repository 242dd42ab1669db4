"""Predictions: `{"instance_id", "model_name_or_path", "model_patch"}` records, read from .json (a list, or a dict
keyed by instance id as SWE-agent writes) or .jsonl, or made from a dataset's gold patches."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roll.swebench.dataset import SWEInstance, read_json_lines

GOLD = "gold"


class PredictionError(ValueError):
    pass


class Prediction(BaseModel):
    model_config = ConfigDict(extra="allow")

    instance_id: str = Field(min_length=1)
    model_name_or_path: str = "None"
    model_patch: str | None = None


def gold_predictions(instances: Iterable[SWEInstance]) -> list[Prediction]:
    return [Prediction(instance_id=i.instance_id, model_name_or_path=GOLD, model_patch=i.patch) for i in instances]


def empty_predictions(instances: Iterable[SWEInstance], model: str = "empty") -> list[Prediction]:
    return [Prediction(instance_id=i.instance_id, model_name_or_path=model, model_patch="") for i in instances]


def read_predictions(path: str | Path) -> list[Prediction]:
    path = Path(path)
    if not path.is_file():
        raise PredictionError(f"predictions file not found: {path}")
    if path.suffix == ".jsonl":
        rows = read_json_lines(path, PredictionError)
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise PredictionError(f"{path}: not JSON ({exc.msg})") from None
        rows = list(data.values()) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise PredictionError(f"{path}: expected a list of predictions or a dict keyed by instance id")
    else:
        raise PredictionError(f"{path}: predictions must be .json or .jsonl")
    predictions, seen = [], set()
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise PredictionError(f"{path}: prediction {index} is not an object")
        try:
            prediction = Prediction.model_validate(row)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise PredictionError(f"{path}: prediction {index}: {'.'.join(map(str, first['loc']))}: "
                                  f"{first['msg']}") from None
        if prediction.instance_id in seen:
            raise PredictionError(f"{path}: two predictions for {prediction.instance_id}")
        seen.add(prediction.instance_id)
        predictions.append(prediction)
    return predictions


def load_predictions(source: str | Path, instances: list[SWEInstance]) -> list[Prediction]:
    """`gold` for the dataset's own patches, else a file; every prediction must name an instance of the dataset."""
    if str(source) == GOLD:
        return gold_predictions(instances)
    predictions = read_predictions(source)
    known = {i.instance_id for i in instances}
    return [p for p in predictions if p.instance_id in known]


def append_prediction(path: Path, prediction: Prediction) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(prediction.model_dump(include={"instance_id", "model_name_or_path", "model_patch"}))
                     + "\n")


def write_predictions(predictions: Iterable[Prediction], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p.model_dump(include={"instance_id", "model_name_or_path", "model_patch"}))
                            + "\n" for p in predictions))
    return path
