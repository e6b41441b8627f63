"""Field types shared by definitions: names, /data paths, scopes (one rule each)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from iotman.core.scopes import SCOPE_PATTERN

__all__ = ["URL_NAME", "DataPath", "DefinitionName", "RequiredScope", "UrlName", "default_path"]

_NAME = re.compile(r"(?!\.+$)[A-Za-z0-9_.-]([A-Za-z0-9 _.-]{0,62}[A-Za-z0-9_.-])?")  # not "." or ".."
_PATH = re.compile(r"[a-z0-9_-]{1,64}")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            "name must be 1 to 64 characters of letters, digits, spaces, '_', '.', '-' (no space at the ends)"
        )
    return value


def _path(value: str | None) -> str | None:
    if value is not None and not _PATH.fullmatch(value):
        raise ValueError("path must be 1 to 64 characters of a-z, 0-9, '_' and '-'")
    return value


URL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _url_name(value: str) -> str:
    if not URL_NAME.fullmatch(value):
        raise ValueError("name must be 1 to 64 characters of letters, digits, '_' and '-'")
    return value


def _scope(value: str | None) -> str | None:
    if value is not None and not SCOPE_PATTERN.fullmatch(value):
        raise ValueError("required_scope must look like namespace:action")
    return value


def default_path(name: str) -> str:
    """The slug of a name: lowercase, anything else than ``[a-z0-9_-]`` becomes ``-``."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")
    return slug[:64] or "source"


DefinitionName = Annotated[str, AfterValidator(_name)]
DataPath = Annotated[str | None, AfterValidator(_path)]
RequiredScope = Annotated[str | None, AfterValidator(_scope)]
UrlName = Annotated[str, AfterValidator(_url_name)]
"""A name that is a URL segment (views, functions, clients, SFTP profiles): letters, digits, `_`, `-`."""
