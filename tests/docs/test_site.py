"""The documentation site builds cleanly and is self-contained.

``mkdocs build --strict`` (what ``make docs`` runs) must pass: mkdocs.yml turns omitted pages,
broken links and broken anchors into warnings, and --strict makes warnings errors. Every page
under docs/ must be in the nav, and the built site must load nothing from the network: no
external script, stylesheet, font or image, Mermaid served from the site itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
VENDORED = DOCS / "assets" / "javascripts"
MERMAID = "assets/javascripts/mermaid.min.js"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module the way `make docs` builds it (cwd: repo root)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        problems = [
            line for line in proc.stderr.splitlines() if "WARNING" in line or "ERROR" in line
        ]
        pytest.fail(
            "mkdocs build --strict failed:\n"
            + "\n".join(problems or proc.stderr.splitlines()[-20:])
        )
    return out


def nav_pages() -> list[str]:
    """The Markdown files the nav of mkdocs.yml names, in order."""
    from mkdocs.config import load_config

    config = load_config(config_file=str(ROOT / "mkdocs.yml"))

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for child in node:
                yield from walk(child)
        elif isinstance(node, dict):
            for child in node.values():
                yield from walk(child)

    return list(walk(config["nav"]))


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    pages = nav_pages()
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert len(pages) == len(set(pages)), "a page is in the nav twice"
    missing = sorted(set(pages) - set(on_disk))
    assert not missing, f"in the nav of mkdocs.yml but not under docs/: {missing}"
    omitted = sorted(set(on_disk) - set(pages))
    assert not omitted, f"under docs/ but not in the nav of mkdocs.yml: {omitted}"


def test_the_nav_has_the_four_sections() -> None:
    pages = nav_pages()
    assert pages[0] == "index.md"
    for section in ("guides/", "architecture/", "reference/"):
        assert any(page.startswith(section) for page in pages), f"no {section} pages"


class _Resources(HTMLParser):
    """Every URL a page makes the browser load, and where it came from."""

    LOADING_LINKS = frozenset(
        {"stylesheet", "preload", "modulepreload", "prefetch", "preconnect", "dns-prefetch"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, str]] = []  # (what, url)
        self.scripts: list[str] = []
        self.mermaid_blocks = 0
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        if tag == "script" and "src" in a:
            self.scripts.append(a["src"])
            self.loads.append(("script", a["src"]))
        elif tag == "link" and self.LOADING_LINKS & set(a.get("rel", "").split()):
            self.loads.append((f"link rel={a['rel']}", a.get("href", "")))
        elif tag == "link" and "icon" in a.get("rel", "").split():
            self.loads.append(("icon", a.get("href", "")))
        elif tag in ("img", "iframe", "source", "audio", "video", "embed", "track"):
            for attr in ("src", "srcset", "poster"):
                if attr in a:
                    self.loads.append((f"{tag} {attr}", a[attr]))
        elif tag == "object" and "data" in a:
            self.loads.append(("object", a["data"]))
        if "style" in a:
            self.loads += [("inline style", url) for url in _css_urls(a["style"])]
        if "mermaid" in a.get("class", "").split():
            self.mermaid_blocks += 1
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.loads += [("style", url) for url in _css_urls(data)]


def _css_urls(css: str) -> list[str]:
    urls = re.findall(r"url\(\s*['\"]?([^'\")]+)", css)
    urls += re.findall(r"@import\s+['\"]([^'\"]+)", css)
    return [u for u in urls if not u.startswith("data:")]


def _external(url: str) -> bool:
    return bool(re.match(r"^\s*(https?:)?//", url, flags=re.IGNORECASE))


def _local_file(site: Path, page: Path, url: str) -> Path:
    """The file a local URL of ``page`` names (404.html uses root-absolute URLs)."""
    path = url.split("?")[0].split("#")[0]
    base = site if path.startswith("/") else page.parent
    return (base / path.lstrip("/")).resolve()


def _pages(site: Path) -> list[Path]:
    pages = sorted(site.rglob("*.html"))
    assert pages, "the build wrote no HTML"
    return pages


def test_the_built_site_loads_nothing_from_the_network(site: Path) -> None:
    found = []
    for page in _pages(site):
        parser = _Resources()
        parser.feed(page.read_text(encoding="utf-8"))
        found += [
            f"{page.relative_to(site)}: {what} {url}"
            for what, url in parser.loads
            if _external(url)
        ]
    for sheet in sorted(site.rglob("*.css")):
        found += [
            f"{sheet.relative_to(site)}: {url}"
            for url in _css_urls(sheet.read_text(encoding="utf-8"))
            if _external(url)
        ]
    assert not found, "external resources in the built site:\n" + "\n".join(found)


def test_no_web_fonts(site: Path) -> None:
    for page in _pages(site):
        html = page.read_text(encoding="utf-8")
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html, page


def test_every_local_script_and_stylesheet_exists(site: Path) -> None:
    missing = []
    for page in _pages(site):
        parser = _Resources()
        parser.feed(page.read_text(encoding="utf-8"))
        for what, url in parser.loads:
            if _external(url) or not url:
                continue
            if not _local_file(site, page, url).is_file():
                missing.append(f"{page.relative_to(site)}: {what} {url}")
    assert not missing, "\n".join(missing)


def test_mermaid_is_the_vendored_local_script(site: Path) -> None:
    """Pages load the site's own mermaid.min.js, byte for byte the vendored, recorded one."""
    with_diagrams = 0
    for page in _pages(site):
        parser = _Resources()
        parser.feed(page.read_text(encoding="utf-8"))
        local = [s for s in parser.scripts if s.split("?")[0].endswith(MERMAID)]
        assert len(local) == 1, f"{page.relative_to(site)} does not load {MERMAID} once"
        assert _local_file(site, page, local[0]) == (site / MERMAID).resolve()
        with_diagrams += parser.mermaid_blocks > 0
    assert with_diagrams, "no page has a mermaid diagram (index.md has one)"
    built = hashlib.sha256((site / MERMAID).read_bytes()).hexdigest()
    assert built == _recorded()["mermaid.min.js"]["sha256"]


def _recorded() -> dict[str, dict[str, str]]:
    """docs/assets/javascripts/vendored.txt: file → package, version, sha256."""
    out = {}
    for line in (VENDORED / "vendored.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            file, package, version, sha256, _source = line.split()
            out[file] = {"package": package, "version": version, "sha256": sha256}
    return out


def test_vendored_scripts_match_their_record() -> None:
    recorded = _recorded()
    assert set(recorded) == {"mermaid.min.js", "iframe-worker-shim.js"}
    for file, facts in recorded.items():
        data = (VENDORED / file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == facts["sha256"], (
            f"docs/assets/javascripts/{file} differs from vendored.txt: "
            "run sh scripts/vendor-mermaid.sh"
        )
        assert (VENDORED / f"LICENSE.{facts['package']}.txt").is_file()


def test_material_fetches_mermaid_only_when_it_is_undefined() -> None:
    """What makes the vendored copy sufficient: Material's bundle uses a global ``mermaid`` and
    loads its CDN copy only when that is undefined, and asks for the major version we vendor."""
    spec = importlib.util.find_spec("material")
    assert spec is not None and spec.origin is not None, "mkdocs-material is not installed"
    assets = Path(spec.origin).parent / "templates" / "assets" / "javascripts"
    bundles = sorted(assets.glob("bundle.*.min.js"))
    assert len(bundles) == 1
    js = bundles[0].read_text(encoding="utf-8")
    match = re.search(
        r'typeof mermaid\s*==+\s*"undefined"[^;]{0,80}?"https://unpkg\.com/mermaid@(\d+)/', js
    )
    assert match, "Material's bundle no longer loads mermaid only when `mermaid` is undefined"
    vendored = _recorded()["mermaid.min.js"]["version"]
    assert vendored.split(".")[0] == match.group(1), (
        f"Material asks for mermaid@{match.group(1)}, vendored is {vendored}: "
        "change MERMAID's version in scripts/vendor-mermaid.sh"
    )


def test_the_site_works_from_the_file_system(site: Path) -> None:
    """The offline plugin: links to .html files, the search index as a script."""
    index = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="guides/quickstart.html"' in index
    assert (site / "search" / "search_index.js").is_file()
    assert "assets/javascripts/iframe-worker-shim.js" in index
