"""The README's tour runs as written, and it agrees with the docs and the example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
MIDDLEWARE = "django_tiercache.middleware.CacheMetricsMiddleware"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.DOTALL)


def test_the_tour_runs_as_a_plain_script(redis_url: str) -> None:
    tour = _python_blocks()[0].replace("redis://127.0.0.1:6379/0", redis_url)

    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", tour],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "alice\n"


def test_the_readme_docs_and_example_all_put_the_middleware_first() -> None:
    from example_project import settings as example

    django_snippet = _python_blocks()[1]
    assert f'MIDDLEWARE.insert(0, "{MIDDLEWARE}")' in django_snippet
    assert f'`MIDDLEWARE = ["{MIDDLEWARE}", ...]`' in (ROOT / "docs" / "django-app.md").read_text()
    assert example.MIDDLEWARE[0] == MIDDLEWARE
