"""SWE-bench instances: load a dataset (a local JSON / JSON-lines / parquet file in the official schema, or a Hugging
Face dataset name when the machine has network) into validated `SWEInstance`s.

Both official schemas are accepted: the classic one (instance_id, repo, base_commit, problem_statement, patch,
test_patch, FAIL_TO_PASS, PASS_TO_PASS, version, ...) and the swebench 5.x one, which adds the instance's `image`,
`eval_script`, `log_parser` and `eval_type`. What a row lacks is derived later from the repository specs."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DATASET_ALIASES = {
    "verified": "SWE-bench/SWE-bench_Verified",
    "lite": "SWE-bench/SWE-bench_Lite",
    "full": "SWE-bench/SWE-bench",
    "multilingual": "SWE-bench/SWE-bench_Multilingual",
}


class DatasetError(ValueError):
    pass


class SWEInstance(BaseModel):
    """One task instance. Unknown keys are kept (`model_extra`) so a row round-trips unchanged."""

    model_config = ConfigDict(extra="allow")

    instance_id: str = Field(min_length=1)
    repo: str = Field(min_length=1)
    base_commit: str = Field(min_length=1)
    problem_statement: str = ""
    patch: str = ""
    test_patch: str = ""
    FAIL_TO_PASS: list[str] = Field(default_factory=list)
    PASS_TO_PASS: list[str] = Field(default_factory=list)
    version: str = ""
    environment_setup_commit: str = ""
    hints_text: str = ""
    created_at: str = ""
    # swebench 5.x columns (derived from the repository specs when absent)
    image: str | None = None
    eval_script: str | None = None
    log_parser: str | None = None
    eval_type: str | None = None
    # our extension for repositories the spec table does not know: the test command, directives appended
    test_cmd: str | None = None

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(f"must be a list or a JSON list string, got {value[:60]!r}") from None
        if hasattr(value, "tolist"):  # numpy arrays from parquet
            value = value.tolist()
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, value: Any) -> Any:
        return "" if value is None else str(value)

    @field_validator("problem_statement", "patch", "test_patch", "hints_text", "created_at",
                     "environment_setup_commit", mode="before")
    @classmethod
    def _null_text(cls, value: Any) -> Any:
        return "" if value is None else value

    def to_row(self) -> dict[str, Any]:
        """The official row: lists as JSON strings (as the datasets ship them), no null 5.x columns."""
        row = self.model_dump(exclude_none=True)
        row["FAIL_TO_PASS"] = json.dumps(self.FAIL_TO_PASS)
        row["PASS_TO_PASS"] = json.dumps(self.PASS_TO_PASS)
        return row


def read_json_lines(path: Path, error: type[ValueError]) -> list[Any]:
    """The JSON value of each non-blank line of `path`; a bad line raises `error` naming path:line."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{number}: not JSON ({exc.msg})") from None
    return rows


def _rows_from_file(path: Path, split: str) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_json_lines(path, DatasetError)
    if suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: not JSON ({exc.msg})") from None
        if isinstance(data, dict):
            data = data.get(split, list(data.values()))
        if not isinstance(data, list):
            raise DatasetError(f"{path}: expected a list of instances")
        return data
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DatasetError(f"reading {path} needs pyarrow: pip install pyarrow") from None
        return pq.read_table(path).to_pylist()
    raise DatasetError(f"{path}: unknown dataset format {suffix!r} (expected .json, .jsonl or .parquet)")


def _rows_from_hub(name: str, split: str) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise DatasetError(f"{name!r} is not a local file, and loading it from the Hugging Face hub needs the "
                           "`datasets` package (pip install datasets)") from None
    try:
        return [dict(row) for row in datasets.load_dataset(name, split=split)]
    except Exception as exc:  # noqa: BLE001 - offline machines fail in many ways
        raise DatasetError(f"could not load {name!r} (split {split!r}) from the Hugging Face hub: "
                           f"{type(exc).__name__}: {exc}. Without network, pass a local .json/.jsonl/.parquet "
                           "file in the official schema.") from None


def validate_rows(rows: Iterable[dict[str, Any]], source: str = "dataset") -> list[SWEInstance]:
    instances, seen = [], set()
    for index, row in enumerate(rows):
        try:
            instance = SWEInstance.model_validate(row)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<row>"
            rid = row.get("instance_id", f"row {index}") if isinstance(row, dict) else f"row {index}"
            raise DatasetError(f"{source}: {rid}: {where}: {first['msg']}") from None
        if instance.instance_id in seen:
            raise DatasetError(f"{source}: duplicate instance_id {instance.instance_id!r}")
        seen.add(instance.instance_id)
        instances.append(instance)
    return instances


def load_instances(dataset: str | Path, split: str = "test", instance_ids: Iterable[str] | None = None) -> list[
        SWEInstance]:
    """Instances of `dataset` (a file path, an alias such as `verified`, or a hub name), optionally only `instance_ids`
    (every one of which must exist)."""
    name = str(dataset)
    path = Path(name)
    if path.exists():
        rows = _rows_from_file(path, split)
    elif path.suffix.lower() in (".json", ".jsonl", ".parquet"):
        raise DatasetError(f"dataset file not found: {path}")
    else:
        name = DATASET_ALIASES.get(name.lower(), name)
        rows = _rows_from_hub(name, split)
    instances = validate_rows(rows, name)
    if instance_ids:
        wanted = list(dict.fromkeys(instance_ids))
        known = {i.instance_id: i for i in instances}
        missing = [i for i in wanted if i not in known]
        if missing:
            raise DatasetError(f"instance ids not in {name}: {', '.join(missing)}")
        instances = [known[i] for i in wanted]
    return instances


def write_instances(instances: Iterable[SWEInstance], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(i.to_row()) + "\n" for i in instances))
    return path
