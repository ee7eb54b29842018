"""The package ships whole: `setup.cfg` finds packages by their `__init__.py`, so a folder of
modules without one would be missing from a wheel (a cluster install) while an editable install
still works."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "spark_jobs"


def test_every_module_folder_is_a_package() -> None:
    folders = {p.parent for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(f.relative_to(PACKAGE.parent)) for f in folders if not (f / "__init__.py").is_file())
    assert missing == []
