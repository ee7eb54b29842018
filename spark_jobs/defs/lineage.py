"""What a table's content depends on in the definitions, so a changed definition is never mixed in.

A block table depends on its feature set's key, block sizes and each feature's aggregation,
column, filter and parameters, and on its source's timestamp, dedupe key and SQL (with the
sources a view reads) — not on windows, defaults or lateness, which only change how blocks are
used, nor on paths, which move between machines. A training table depends on its impressions,
keys, features, labels, logged values and the block lineage of every feature set it uses. Each table keeps the
lineage it was built from; a run whose lineage differs is refused unless it rebuilds the table.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from spark_jobs.aggregations import REGISTRY
from spark_jobs.defs.models import Definitions

Lineage = dict[str, Any]


def _source(defs: Definitions, name: str) -> Lineage:
    src = defs.sources[name]
    out: Lineage = {"timestamp": src.timestamp, "dedupe_key": list(src.dedupe_key)}
    if src.sql is not None:
        out["sql"] = " ".join(src.sql.split())
        out["reads"] = {dep: _source(defs, dep) for dep in src.depends_on}
    return out


def block_lineage(defs: Definitions, feature_set: str) -> Lineage:
    fs = defs.feature_sets[feature_set]
    return {
        "source": {fs.source: _source(defs, fs.source)},
        "key": list(fs.key),
        "block_sizes": [d.seconds for d in fs.block_sizes],
        "features": {
            f.name: {
                "aggregation": f.aggregation,
                "column": f.column,
                "filter": f.filter,
                "n": f.n,
                "quantiles": list(f.quantiles) if f.quantiles else None,
                **_sketch(f.aggregation),
            }
            for f in fs.features
        },
    }


def _sketch(aggregation: str) -> Lineage:
    """A sketch's size, for sketches only: blocks built with another K cannot be merged with these."""
    size = REGISTRY[aggregation].sketch_size
    return {} if size is None else {"sketch_size": size}


def training_lineage(defs: Definitions, training_set: str) -> Lineage:
    ts = defs.training_sets[training_set]
    lineage: Lineage = {
        "impressions": {ts.impressions: _source(defs, ts.impressions)},
        "keys": dict(sorted(ts.keys.items())),
        "features": [ref.column for ref in ts.features],
        "feature_sets": {fs: block_lineage(defs, fs) for fs in ts.feature_sets},
        "labels": {
            lb.name: {"source": {lb.source: _source(defs, lb.source)}, "filter": lb.filter, "within": lb.within.seconds}
            for lb in ts.labels
        },
    }
    if ts.logged is not None:  # only when present: tables built before logging keep their lineage
        lineage["logged"] = {"column": ts.logged.column, "values": dict(sorted(ts.logged.values.items()))}
    return lineage


def fingerprint(lineage: Lineage) -> str:
    return hashlib.sha256(json.dumps(lineage, sort_keys=True, default=str).encode()).hexdigest()


def changes(old: Lineage, new: Lineage, prefix: str = "") -> list[str]:
    """Dotted paths where `new` differs from `old`, e.g. `features.views.filter`."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                out.append(f"{where} added")
            elif key not in new:
                out.append(f"{where} removed")
            else:
                out += changes(old[key], new[key], where)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]
