"""The configuration reference lists every setting there is."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tiercache import CacheOptions

REFERENCE = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()


def _documented(name: str) -> bool:
    return f"| `{name}` |" in REFERENCE


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(CacheOptions)])
def test_every_core_option_is_in_the_reference(name: str) -> None:
    assert _documented(name)


def test_every_backend_option_and_app_setting_is_in_the_reference() -> None:
    from django_tiercache.conf import APP_DEFAULTS
    from django_tiercache.options import OPTION_DEFAULTS

    missing = [name for name in [*OPTION_DEFAULTS, *APP_DEFAULTS] if not _documented(name)]
    assert missing == []
