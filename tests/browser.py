"""A headless Chromium for page tests: Debian's ``chromium``, installed when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache

__all__ = ["chromium_path"]


@cache
def chromium_path() -> str:
    """The path of Debian's Chromium, installing the package first if it is not there."""
    found = shutil.which("chromium")
    if found is None:
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=environment)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=environment)
        found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("chromium is not on PATH even after installing Debian's package")
    return found
