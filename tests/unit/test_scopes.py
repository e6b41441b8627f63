from __future__ import annotations

import pytest

from iotman.core.scopes import check_scope, grants, preset_scopes
from iotman.errors import DefinitionInvalid


@pytest.mark.parametrize(
    ("granted", "required", "expected"),
    [
        (("iotman:*",), "iotman:sources:create", True),
        (("iotman:*",), "app:data", False),
        (("iotman:*:read",), "iotman:sources:read", True),
        (("iotman:*:read",), "iotman:sources:create", False),
        (("app:data",), "app:data", True),
        (("app:*",), "app:data", True),
        (("app:data",), "app:data:extra", False),
        ((), "app:data", False),
    ],
)
def test_grants(granted: tuple[str, ...], required: str, expected: bool) -> None:
    assert grants(granted, required) is expected


def test_presets_and_validation() -> None:
    assert preset_scopes("full-access") == ("iotman:*",)
    with pytest.raises(DefinitionInvalid, match="presets are"):
        preset_scopes("god-mode")
    assert check_scope("app:data") == "app:data"
    for bad in ("nocolon", "Upper:case", "a b:c", ""):
        with pytest.raises(DefinitionInvalid):
            check_scope(bad)
