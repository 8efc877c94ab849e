"""Shared test fixtures: where the real Sentinel data lives, and skipping cleanly when it is absent."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from decloud.testing.faults import ctrl_c_as_from_a_terminal

# Quiet TensorFlow's C++ start-up logs (set before any test imports it; child processes inherit it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Real Sentinel data shipped beside the repository (never copied into it).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
#: Set to 1 (CI does) to make the tests that need the real data fail, instead of skip, when it is absent.
REQUIRE_SHARED_DATA = "DECLOUD_REQUIRE_SHARED_DATA"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real Sentinel data; tests that need it skip with the reason when it is absent (fail when
    DECLOUD_REQUIRE_SHARED_DATA=1, so that a CI run cannot pass without having run them)."""
    if not SHARED_DATA.is_dir():
        reason = f"real Sentinel data not found at {SHARED_DATA} (../shared/data beside the repository)"
        if os.environ.get(REQUIRE_SHARED_DATA) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_SHARED_DATA}=1 requires it", pytrace=False)
        pytest.skip(reason)
    return SHARED_DATA


@pytest.fixture
def ctrl_c_raises():
    """SIGINT as a terminal delivers it, for this test (the tests may run with SIGINT ignored, under nohup)."""
    previous = signal.getsignal(signal.SIGINT)
    ctrl_c_as_from_a_terminal()
    yield
    signal.signal(signal.SIGINT, previous)
