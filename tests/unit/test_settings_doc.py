"""Every setting is documented: docs/settings.md is generated from the table and must be current."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotman.errors import ConfigurationError
from iotman.settings import SETTINGS_TABLE, load_settings, settings_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_settings_doc_is_current() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text()
    assert doc == settings_markdown(), "run `make docs` to regenerate docs/settings.md"


def test_environment_overrides_and_errors() -> None:
    settings = load_settings(environ={"IOTMAN_PORT": "9000", "IOTMAN_ACCESS_LOG": "yes"})
    assert settings.port == 9000
    assert settings.access_log is True
    assert load_settings(environ={"IOTMAN_PORT": "9000"}, port=7000).port == 7000
    with pytest.raises(ConfigurationError) as caught:
        load_settings(environ={"IOTMAN_SQLITE_SYNCHRONOUS": "sometimes"})
    assert caught.value.field == "sqlite_synchronous"
    assert {s.env for s in SETTINGS_TABLE} >= {"IOTMAN_DATA", "IOTMAN_STORE"}
