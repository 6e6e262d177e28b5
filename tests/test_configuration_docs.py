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


def _row(name: str) -> list[str]:
    [line] = [line for line in REFERENCE.splitlines() if line.startswith(f"| `{name}` |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_each_backend_option_is_documented_with_its_real_default() -> None:
    from django_tiercache.options import OPTION_DEFAULTS

    wrong = {
        name: _row(name)[1]
        for name, default in OPTION_DEFAULTS.items()
        if _row(name)[1] != f"`{default!r}`"
    }
    assert wrong == {}


def test_each_django_default_that_differs_from_the_core_says_why() -> None:
    from django_tiercache.options import DJANGO_DEFAULTS

    core_defaults = {f.name: f.default for f in dataclasses.fields(CacheOptions)}
    for name, default in DJANGO_DEFAULTS.items():
        [line] = [line for line in REFERENCE.splitlines() if line.startswith(f"| `{name}` (")]
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[1:3] == [f"`{core_defaults[name]!r}`", f"`{default!r}`"]
        assert len(cells[3]) > 20  # the reason
