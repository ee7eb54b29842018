"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days (2026-01-01, 2026-01-02) of the demo's synthetic data, small."""
    from spark_jobs.demo.synthetic import generate

    root = tmp_path_factory.mktemp("data")
    generate(root / "demo", days=2, events_per_day=15_000, impressions_per_day=3_000)
    return root
