"""The console's page as shipped in the package: its files are there, it runs only its own
scripts (no inline script, nothing from elsewhere, nothing downloaded), and it never writes HTML
from data (Alpine's x-text only, no x-html or innerHTML)."""

from __future__ import annotations

import re
from importlib import resources

STATIC = resources.files("cronbus.agents.console") / "static"


def text(name: str) -> str:
    return (STATIC / name).read_text()


def test_the_page_its_script_style_and_alpine_with_its_licence_are_packaged():
    names = {f.name for f in STATIC.iterdir()}
    assert {"index.html", "console.js", "console.css", "alpine-3.17.5.min.js",
            "ALPINE-LICENSE.md"} <= names
    assert "MIT License" in text("ALPINE-LICENSE.md")


def test_the_page_loads_only_its_own_scripts_and_writes_data_as_text():
    page = text("index.html")
    sources = re.findall(r'<script[^>]*src="([^"]+)"', page)
    assert sources == ["/ui/static/console.js", "/ui/static/alpine-3.17.5.min.js"]
    assert re.findall(r"<script(?![^>]*src=)[^>]*>", page) == []  # no inline script
    assert "http://" not in page and "https://" not in page
    script = text("console.js")
    for writes_html in ("x-html", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert writes_html not in page and writes_html not in script
    # the token lives in this tab's sessionStorage and travels in a header, never a cookie
    assert "sessionStorage" in script and "document.cookie" not in script
    assert "Authorization" in script
