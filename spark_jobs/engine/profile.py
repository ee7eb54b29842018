"""Engine profiles (`conf/*.yaml`) and `--set KEY=VALUE` overrides."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from spark_jobs.errors import DefinitionError

_BYTES = re.compile(r"^\s*(\d+)\s*([kmgt]?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True)
class Profile:
    """Where and how jobs run: engine, folders and engine settings (tables are always Delta;
    `table_format: parquet` is accepted from old profiles and warned about)."""

    file: str
    engine: Literal["sail", "spark"] = "sail"
    table_format: Literal["delta", "parquet"] = "delta"
    warehouse: str = "./warehouse"
    data_root: str = "./data"
    master: str | None = None
    sail_memory_limit: int = 8 << 30
    sail_parallelism: int = 0
    spark: dict[str, str] = field(default_factory=dict)
    lock_timeout_s: float = 3600.0
    # How training sets look features up: the sorted sweep, the SQL assembly, or auto (the one
    # measured faster on the engine; both give the same values).
    point_in_time: Literal["auto", "sweep", "sql"] = "auto"

    @property
    def warehouse_path(self) -> Path:
        return Path(self.warehouse).expanduser().resolve()

    def summary(self) -> dict[str, Any]:
        """What a run manifest records of the profile it ran with."""
        return {
            "file": self.file, "engine": self.engine, "table_format": self.table_format,
            "warehouse": str(self.warehouse_path), "data_root": self.data_root, "spark": dict(self.spark),
            "lock_timeout_s": self.lock_timeout_s, "point_in_time": self.point_in_time,
        }


def parse_bytes(text: object, where: str) -> int:
    m = _BYTES.match(str(text))
    if not m:
        raise DefinitionError(f"{where}: {text!r} is not a size (write e.g. 8g, 512m)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def load_profile(
    path: str | Path | None,
    overrides: Sequence[str] = (),
    *,
    missing_ok: bool = False,
    base: Path | None = None,
) -> Profile:
    """Read a profile and apply `KEY=VALUE` overrides (`spark.<conf>=v`, `sail.memory_limit=4g`).

    `path` None, or a missing file with `missing_ok`, means the built-in defaults (Sail, Delta,
    ./warehouse, ./data). The relative `warehouse` and `data_root` of the file (and the defaults)
    are relative to `base`, the project folder; those of `--set` to the current folder, like any
    path typed on a command line. Without `base`, both are relative to the current folder.
    """
    raw = _read(Path(path), missing_ok) if path is not None else {}
    shown = str(path) if path is not None else "built-in profile"
    root = (base or Path.cwd()).resolve()
    for key, default in _PATHS.items():
        raw[key] = _under(raw.get(key, default), root)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DefinitionError(f"--set {item!r}: write KEY=VALUE, e.g. --set warehouse=/tmp/w")
        head, dot, rest = key.partition(".")
        if dot and head in ("spark", "sail"):
            raw.setdefault(head, {})
            if not isinstance(raw[head], dict):
                raw[head] = {}
            if head == "sail":
                raw[head][rest] = yaml.safe_load(value)
            else:  # the conf's own name (`spark.sql.shuffle.partitions`); `spark.spark.sql...` still works
                raw[head][rest if rest.startswith("spark.") else key] = value
        elif key in _PATHS:
            raw[key] = _under(value, Path.cwd())
        else:
            raw[key] = yaml.safe_load(value) if value else value
    return _build(shown, raw)


_PATHS = {"warehouse": "./warehouse", "data_root": "./data"}  # profile keys that are folders


def _under(value: object, root: Path) -> str:
    """`value` as an absolute folder, relative ones taken from `root` (URLs stay as written)."""
    text = str(value)
    if not text or "://" in text:
        return text
    return str((root / Path(text).expanduser()).resolve())


def _read(path: Path, missing_ok: bool) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise DefinitionError(
            f"{path}: profile not found (see conf/ for local.yaml, spark-local.yaml, cluster.yaml)"
        ) from None
    except IsADirectoryError:
        raise DefinitionError(f"{path}: a profile is a YAML file, not a folder") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise DefinitionError(f"{path}{line}: YAML syntax error in profile: {exc}") from None
    if not isinstance(raw, dict):
        raise DefinitionError(f"{path}: a profile is a mapping of engine, table_format, warehouse, ...")
    return raw


def _build(file: str, raw: dict[str, Any]) -> Profile:
    allowed = {"engine", "table_format", "warehouse", "data_root", "master", "sail", "spark", "lock_timeout_s",
               "point_in_time"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise DefinitionError(f"{file}: unknown profile key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    engine = raw.get("engine", "sail")
    if engine not in ("sail", "spark"):
        raise DefinitionError(f"{file} engine: {engine!r} is not an engine (sail | spark)")
    fmt = raw.get("table_format", "delta")
    if fmt not in ("delta", "parquet"):
        raise DefinitionError(f"{file} table_format: {fmt!r} is not a table format (delta; every engine writes Delta)")
    pit = raw.get("point_in_time", "auto")
    if pit not in ("auto", "sweep", "sql"):
        raise DefinitionError(f"{file} point_in_time: {pit!r} is not a lookup method (auto | sweep | sql)")
    sail = raw.get("sail") or {}
    spark = raw.get("spark") or {}
    if not isinstance(sail, dict) or not isinstance(spark, dict):
        raise DefinitionError(f"{file}: `sail` and `spark` are mappings of settings")
    unknown_sail = sorted(set(sail) - {"memory_limit", "parallelism"})
    if unknown_sail:
        raise DefinitionError(f"{file} sail.{unknown_sail[0]}: unknown (allowed: memory_limit, parallelism)")
    profile = Profile(
        file=file,
        engine=engine,
        table_format=fmt,
        warehouse=str(raw["warehouse"]),
        data_root=str(raw["data_root"]),
        master=raw.get("master"),
        spark={str(k): str(v) for k, v in spark.items()},
        lock_timeout_s=float(raw.get("lock_timeout_s", 3600.0)),
        point_in_time=pit,
    )
    if "memory_limit" in sail:
        profile = replace(profile, sail_memory_limit=parse_bytes(sail["memory_limit"], f"{file} sail.memory_limit"))
    if "parallelism" in sail:
        try:
            profile = replace(profile, sail_parallelism=int(sail["parallelism"]))
        except (TypeError, ValueError):
            raise DefinitionError(f"{file} sail.parallelism: {sail['parallelism']!r} is not a whole number") from None
    return profile
