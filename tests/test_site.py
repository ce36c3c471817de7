"""The published book, opened in a real browser (headless Debian Chromium driven by Playwright).

Every page of the table of contents is served from the session's book build on 127.0.0.1 and
opened with the network to every other host BLOCKED (a reader offline, or behind a proxy, must
still get a complete page). Per page we check:

* the page title renders (``<title>`` and a visible ``<h1>``);
* every ``<img>`` loaded (``naturalWidth > 0``);
* no console error and no uncaught JavaScript error;
* no failed or 4xx/5xx request to the local server;
* no external request is needed: every request to another host is recorded and must be none
  of script, stylesheet, font or image (MathJax is served from ``_static/mathjax``);
* pages with math render it (MathJax ``mjx-container`` elements, no ``mjx-merror``);
* every internal link (``<a href>`` into the site) points at an existing file, and at an existing
  ``id`` in it when it has a ``#fragment``;
* the footer shows the licences (code MIT, PBC images CC BY 4.0);
* notebook pages carry a "Launch on Colab" link and a download-source link to the ``.ipynb``.

A full-page screenshot of each page is saved in ``$BLOODCELLS_OUTPUT_DIR/site-screenshots`` (a
temporary folder under pytest; the path is printed), with ``external-requests.txt`` listing the
blocked requests to other hosts, if any. Skipped, with the reason, when
``/usr/bin/chromium`` (``make browser`` installs it) or the ``playwright`` package is missing.
"""
from __future__ import annotations

import functools
import html.parser
import os
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from booktoc import ROOT, toc_pages

CHROMIUM = Path(os.environ.get("BLOODCELLS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NEEDED_TYPES = {"script", "stylesheet", "font", "image"}  # external requests of these would break a page
LICENCE_TEXT = ("MIT", "CC BY 4.0")

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

pytestmark = [
    pytest.mark.slow,  # builds the book (once per session, shared with test_book.py)
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} not installed: `make browser` installs Debian's chromium (root + apt-get)"),
    pytest.mark.skipif(sync_playwright is None,
                       reason="the playwright package is not importable: `make setup` installs it"),
]


# ---------------------------------------------------------------------------------------------
# The pages: every file of _toc.yml
# ---------------------------------------------------------------------------------------------
def is_notebook(doc: str) -> bool:
    return (ROOT / f"{doc}.ipynb").exists()


PAGES = toc_pages()


# ---------------------------------------------------------------------------------------------
# Fixtures: a local web server and one browser for the module
# ---------------------------------------------------------------------------------------------
class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def site_url(built_site: Path):
    """Serve the built html folder on 127.0.0.1 (a free port) from a background thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(built_site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser_context():
    """A headless Chromium with a fresh profile; the network outside 127.0.0.1 is blocked."""
    with tempfile.TemporaryDirectory(prefix="bloodcells-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900}, service_workers="block")
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def screenshot_dir(request) -> Path:
    base = Path(os.environ.get("BLOODCELLS_OUTPUT_DIR") or tempfile.mkdtemp(prefix="bloodcells-"))
    folder = base / "site-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else _nullcontext():
        print(f"\n[test_site] screenshots of the book's pages: {folder}")
    return folder


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------------------------------------
# Internal links: files and anchors
# ---------------------------------------------------------------------------------------------
class _Ids(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        for k, v in attrs:
            if k == "id" or (k == "name" and tag == "a"):
                self.ids.add(v or "")


@functools.cache
def anchors_in(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def broken_internal_links(hrefs: list[str], site_url: str, html_root: Path) -> list[str]:
    """The hrefs (absolute URLs) into the site whose file, or #anchor in it, does not exist."""
    bad = []
    for href in sorted(set(hrefs)):
        if not href.startswith(site_url + "/"):
            continue
        parts = urlsplit(href)
        rel = unquote(parts.path).lstrip("/")
        target = html_root / rel
        if rel == "" or rel.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            bad.append(f"{href} (no file {target.relative_to(html_root)})")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in anchors_in(target):
            bad.append(f"{href} (no id {parts.fragment!r} in {target.relative_to(html_root)})")
    return bad


def test_toc_lists_pages():
    assert PAGES and PAGES[0], "_toc.yml lists no page"


# ---------------------------------------------------------------------------------------------
# One test per page of the book
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("doc", PAGES)
def test_page_in_browser(doc: str, built_site: Path, site_url: str, browser_context, screenshot_dir: Path):
    html_file = built_site / f"{doc}.html"
    assert html_file.exists(), f"{doc} is in _toc.yml but the build wrote no {html_file.name}"
    host = urlsplit(site_url).netloc
    external: list[str] = []
    console_errors: list[str] = []
    local_failures: list[str] = []

    def route(r):
        if urlsplit(r.request.url).netloc == host:
            r.continue_()
        else:  # offline reader: nothing from a CDN may be needed
            external.append(f"{r.request.resource_type}: {r.request.url}")
            r.abort("blockedbyclient")

    page = browser_context.new_page()
    page.route("**/*", route)
    page.on("console", lambda m: console_errors.append(f"{m.text} @ {m.location.get('url')}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: local_failures.append(f"{r.url}: {r.failure}")
            if urlsplit(r.url).netloc == host else None)
    page.on("response", lambda r: local_failures.append(f"{r.url}: HTTP {r.status}")
            if urlsplit(r.url).netloc == host and r.status >= 400 else None)
    try:
        page.goto(f"{site_url}/{doc}.html", wait_until="load")
        page.wait_for_load_state("networkidle")
        math_rendered = True
        if page.locator(".math").count() > 0:  # MathJax typesets asynchronously
            try:
                page.wait_for_function("document.querySelectorAll('mjx-container').length > 0", timeout=30_000)
            except PlaywrightTimeout:
                math_rendered = False
        # images: make lazy ones load, then wait for every image to settle
        page.evaluate("""() => Promise.all([...document.images].map(img => {
            img.loading = 'eager';
            return img.complete ? null : new Promise(ok => { img.onload = img.onerror = ok; });
        }))""")
        images = page.evaluate("[...document.images].map(i => [i.currentSrc || i.src, i.naturalWidth])")
        title = page.title()
        h1 = page.locator("main h1 >> visible=true").first
        hrefs = page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
        footer = page.locator("footer").all_inner_texts()
        colab = page.locator("a[href*='colab.research.google.com']").count()
        download = page.locator(f"a[href$='{Path(doc).name}.ipynb']").count()
        mjx_errors = page.locator("mjx-merror").count()
        math_src = page.evaluate("[...document.scripts].map(s => s.src).filter(s => /mathjax/i.test(s))")
        # a code box or printed output that scrolls sideways: its widest line, shortened
        sideways = page.evaluate("""() => [...document.querySelectorAll('main pre')]
            .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
            .map(e => e.innerText.split('\\n').reduce((a, b) => (b.length > a.length ? b : a), '').slice(0, 90))""")
        # an executed output (a table) wider than the column: its first line, shortened
        wide = page.evaluate("""() => [...document.querySelectorAll('main div.cell_output > div')]
            .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
            .map(e => e.innerText.trim().split('\\n')[0].slice(0, 90))""")
        page.screenshot(path=str(screenshot_dir / f"{doc.replace('/', '__')}.png"), full_page=True)
        h1_visible, h1_text = h1.is_visible(), h1.inner_text().strip()
    finally:
        page.close()

    problems: list[str] = []
    if not title.strip():
        problems.append("empty <title>")
    if not (h1_visible and h1_text):
        problems.append("no visible <h1> heading")
    problems += [f"image did not load: {src}" for src, width in images if not width]
    problems += [f"console error: {e}" for e in console_errors]
    problems += [f"failed local request: {f}" for f in local_failures]
    problems += [f"needs an external {e}" for e in external if e.split(":")[0] in NEEDED_TYPES]
    problems += [f"MathJax loaded from another host: {s}" for s in math_src if urlsplit(s).netloc != host]
    if not math_rendered:
        problems.append("the page has math but MathJax rendered none (no mjx-container after 30 s)")
    if mjx_errors:
        problems.append(f"{mjx_errors} MathJax error(s) (mjx-merror) in the rendered math")
    problems += [f"broken internal link: {b}" for b in broken_internal_links(hrefs, site_url, built_site)]
    problems += [f"a code box scrolls sideways (at 1280 px) on the line {line!r}" for line in sideways]
    problems += [f"an output scrolls sideways (at 1280 px): {first!r}" for first in wide]
    footer_text = " ".join(footer)
    problems += [f"footer lacks the licence text {t!r}" for t in LICENCE_TEXT if t not in footer_text]
    if is_notebook(doc):
        if not colab:
            problems.append("notebook page has no 'Launch on Colab' link (launch_buttons / repository.url)")
        if not download:
            problems.append("notebook page has no download link to its .ipynb")
    other = [e for e in external if e.split(":")[0] not in NEEDED_TYPES]
    if external:  # the record of what a reader's browser would fetch from other hosts
        with open(screenshot_dir / "external-requests.txt", "a") as fh:
            fh.writelines(f"{doc}\t{e}\n" for e in external)
    assert not problems, f"{doc}.html:\n  " + "\n  ".join(problems) + (
        f"\n  (other external requests, blocked: {other})" if other else "")


# ---------------------------------------------------------------------------------------------
# MathJax works offline even before a chapter has math: a probe page on the same server that
# loads the site's own copy the way Sphinx's math pages do
# ---------------------------------------------------------------------------------------------
MATH_PROBE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>math probe</title>
<script>window.MathJax = {"options": {"processHtmlClass": "tex2jax_process|mathjax_process|math|output_area"}}</script>
<script defer src="mathjax/tex-chtml.js"></script></head>
<body><div class="math notranslate nohighlight">\\[\\hat p = \\frac{1}{n}\\sum_{i=1}^{n} x_i\\]</div>
<p>inline <span class="math notranslate nohighlight">\\(a^2+b^2=c^2\\)</span></p></body></html>"""


def test_mathjax_served_locally_renders_offline(built_site: Path, site_url: str, browser_context):
    assert (built_site / "_static" / "mathjax" / "tex-chtml.js").is_file(), \
        "the build has no _static/mathjax/tex-chtml.js: is sphinx-mathjax-offline in _config.yml extra_extensions?"
    host = urlsplit(site_url).netloc
    external, failures, errors = [], [], []
    page = browser_context.new_page()

    def route(r):
        if r.request.url.endswith("/_static/math-probe.html"):
            r.fulfill(body=MATH_PROBE, content_type="text/html")
        elif urlsplit(r.request.url).netloc == host:
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort("blockedbyclient")

    page.route("**/*", route)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: failures.append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None)
    try:
        page.goto(f"{site_url}/_static/math-probe.html", wait_until="load")
        page.wait_for_function("document.querySelectorAll('mjx-container').length >= 2", timeout=30_000)
        page.wait_for_load_state("networkidle")
        n_errors = page.locator("mjx-merror").count()
        fonts = page.evaluate("document.fonts.ready.then(() => [...document.fonts]"
                              ".filter(f => f.status === 'loaded').map(f => f.family))")
    finally:
        page.close()
    assert not external and not failures and not errors and n_errors == 0, (external, failures, errors, n_errors)
    assert any("MJX" in f for f in fonts), f"MathJax's fonts did not load from the site: {fonts}"
