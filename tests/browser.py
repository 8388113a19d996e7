"""A headless Chromium for page tests (Debian's ``chromium``, installed when missing), and
axe-core's verdict on a page (``make axe`` installs the pinned axe-core from tests/axe)."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

__all__ = ["axe_violations", "chromium_path"]

AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"


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


@cache
def _axe_source() -> str:
    if not AXE.is_file():
        raise RuntimeError(f"axe-core is not installed at {AXE}: run `make axe` (needs npm)")
    return AXE.read_text("utf-8")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """What axe-core finds wrong on ``page`` as it is now, by every rule of WCAG 2.2 A and AA
    and axe's best practices: each violation's rule, impact and the elements it found."""
    # Evaluated by the browser's debugger, which the page's Content-Security-Policy (no
    # scripts at all) does not govern; the page itself stays without JavaScript.
    page.evaluate(_axe_source())
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',
                                            'wcag22aa', 'best-practice']}
        })).violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                  nodes: v.nodes.map(n => n.html)}))"""
    )
    return found
