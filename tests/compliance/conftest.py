"""Where the official compliance suites live (../shared/compliance, or IOTMAN_COMPLIANCE_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def compliance_dir() -> Path:
    return Path(os.environ.get("IOTMAN_COMPLIANCE_DIR", ROOT.parent / "shared" / "compliance"))


@pytest.fixture(scope="session")
def compliance() -> Path:
    folder = compliance_dir()
    if not folder.is_dir():
        pytest.skip(
            f"the official compliance suites are not at {folder}: put the jsonpath-compliance-test-suite "
            "(cts.json) and the jsonata-js test-suite there, or set IOTMAN_COMPLIANCE_DIR"
        )
    return folder
