"""Great Expectations' import defers the modules only a few expectations use (`gx._defer`).

Each check runs in a fresh interpreter: what is imported is process state.
"""

from __future__ import annotations

from tests.helpers import run_python


def test_a_deferred_module_is_imported_on_first_use_and_then_is_the_real_one():
    out = run_python(
        """
        import sys
        from spark_jobs.quality import gx
        assert "colorsys" not in sys.modules
        gx._defer(["colorsys", "no_such_module_tilewise"])
        assert "no_such_module_tilewise" not in sys.modules
        stand_in = sys.modules["colorsys"]
        assert type(stand_in).__name__ == "_Deferred"
        import colorsys                         # binds the stand-in; imports nothing yet
        assert colorsys is stand_in and "rgb_to_hsv" not in vars(stand_in)
        print(colorsys.rgb_to_hsv(1.0, 0.0, 0.0))
        assert type(sys.modules["colorsys"]).__name__ == "module"
        from colorsys import hsv_to_rgb         # the real module from now on
        print(hsv_to_rgb(0.0, 1.0, 1.0), colorsys.hls_to_rgb(0.0, 0.5, 1.0))
        """
    )
    assert out.splitlines() == ["(0.0, 1.0, 1.0)", "(1.0, 0.0, 0.0) (1.0, 0.0, 0.0)"]


def test_ge_imports_without_scipy_stats_and_altair_and_its_expectations_still_get_them():
    out = run_python(
        """
        import sys
        from spark_jobs.quality import gx
        gx._import_gx()
        print(type(sys.modules["scipy.stats"]).__name__, type(sys.modules["altair"]).__name__)
        from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as kl
        print(round(float(kl.stats.entropy([0.5, 0.5])), 6), kl.alt.Chart.__name__)
        print(type(sys.modules["scipy.stats"]).__name__, type(sys.modules["altair"]).__name__)
        """
    )
    assert out.splitlines() == ["_Deferred _Deferred", "0.693147 Chart", "module module"]
