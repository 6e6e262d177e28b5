#!/usr/bin/env python
"""Run administrative tasks of the example site (from any directory)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The site is the package `example_project` of the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    """Run a management command."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
