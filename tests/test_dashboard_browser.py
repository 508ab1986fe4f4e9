"""Does the dashboard (lessons/explore.ipynb served by Voila) react in a real browser?

Voila serves the notebook on 127.0.0.1; Playwright drives Debian's headless Chromium (never a downloaded
browser); the test moves the color control and the epsilon slider and checks that the shown predictions
and confidences change. Screenshots land in the test's tmp folder and, when SHORTCUTLAB_SCREENSHOT_DIR is
set, in that folder too. SHORTCUTLAB_DASHBOARD_NOTEBOOK serves another notebook (same CSS classes) instead.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = Path(os.environ.get("SHORTCUTLAB_DASHBOARD_NOTEBOOK", ROOT / "lessons" / "explore.ipynb"))
STUDY_MODELS = ("cheater", "consistency", "grl")
START_TIMEOUT = 60  # seconds for Voila to listen
RENDER_TIMEOUT = 240_000  # ms for the notebook to execute and its widgets to render
UPDATE_TIMEOUT = 60_000  # ms for a readout to follow a control
# Nothing but the local server is reachable: CDN requests (Voila's icon font) fail at once, never hang.
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-dev-shm-usage", "--disable-gpu",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]

RECOLOR_RESULT = re.compile(r": \d \(\d+(?:\.\d+)?%\)")  # "cheater: 3 (97.1%)"
EPSILON_RESULT = re.compile(r"p\((\d)\) = (\d(?:\.\d+)?)")  # "cheater: p(3) = 0.412 (success)"


def chromium_path() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def models_used(notebook: Path) -> list[str]:
    """The study models the notebook's code names (all of them when it names none)."""
    nb = nbformat.read(notebook, as_version=4)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    named = [name for name in STUDY_MODELS if re.search(rf"""["']{name}["']""", code)]
    return named or list(STUDY_MODELS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux /proc; empty elsewhere). Kernels run in sessions of their own."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop(proc: subprocess.Popen) -> None:
    """Stop Voila (its process group) and whatever kernels it started, by process id."""
    below = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # Voila shuts its kernels down on SIGTERM
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    for pid in below:  # a kernel that outlived the server
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def dashboard(request, tmp_path_factory):
    """The URL of lessons/explore.ipynb served by Voila on 127.0.0.1, its models trained beforehand."""
    if not NOTEBOOK.exists():
        pytest.skip(f"{NOTEBOOK} does not exist (generate it with `shortcutlab release`)")
    if chromium_path() is None:
        pytest.skip("Chromium is missing (/usr/bin/chromium; Debian: apt-get install chromium); "
                    "the dashboard's browser test needs it, .ci/run installs it")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is missing (pip install -e '.[test]')")
    pytest.importorskip("voila", reason="voila is missing (pip install -e .)")

    work = tmp_path_factory.mktemp("dashboard")
    env = dict(os.environ)
    env.update(SHORTCUTLAB_OFFLINE="1", SHORTCUTLAB_ARTIFACTS=str(work / "artifacts"), MPLBACKEND="Agg",
               OMP_NUM_THREADS="1", PYDEVD_DISABLE_FILE_VALIDATION="1",
               JUPYTER_RUNTIME_DIR=str(work / "runtime"))
    # The run's trained study models, copied and loaded once before Voila starts, so its kernel only loads them.
    names = models_used(NOTEBOOK)
    shutil.copytree(request.getfixturevalue("study_artifacts") / "models", work / "artifacts" / "models")
    subprocess.run([sys.executable, "-c", f"import shortcutlab\nfor n in {names!r}: shortcutlab.pretrained(n, quiet=True)"],
                   env=env, check=True, timeout=900, cwd=work)

    port = free_port()
    log_path = work / "voila.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
             "--Voila.port_retries=0", "--Voila.token=", "--show_tracebacks=True"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=NOTEBOOK.parent, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"voila exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"voila did not listen on port {port} within {START_TIMEOUT} s:\n"
                            f"{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield {"url": f"http://127.0.0.1:{port}/", "log": log_path}
    finally:
        stop(proc)


def fit_viewport(page, width: int = 1280) -> None:
    """Grow the viewport to the whole dashboard: Voila scrolls #rendered_cells, not the page, so a
    full-page screenshot would otherwise show one screen."""
    height = page.evaluate("""() => { const cells = document.querySelector('#rendered_cells');
                                       return (cells || document.documentElement).scrollHeight; }""")
    page.set_viewport_size({"width": width, "height": max(600, min(int(height) + 32, 16000))})


@pytest.fixture(scope="module")
def screenshot_dirs(tmp_path_factory) -> list[Path]:
    dirs = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("SHORTCUTLAB_SCREENSHOT_DIR"):
        dirs.append(Path(os.environ["SHORTCUTLAB_SCREENSHOT_DIR"]))
        dirs[-1].mkdir(parents=True, exist_ok=True)
    return dirs


@pytest.mark.slow
def test_dashboard_reacts_to_color_and_epsilon(dashboard, screenshot_dirs):
    """In Chromium: does a new stroke color change the predictions, and a larger epsilon the confidence?"""
    from playwright.sync_api import expect, sync_playwright

    def shoot(page, name: str) -> None:
        path = screenshot_dirs[0] / f"{name}.png"
        page.screenshot(path=path, full_page=True)
        for folder in screenshot_dirs[1:]:
            shutil.copy(path, folder / path.name)

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(dashboard["url"], timeout=RENDER_TIMEOUT)
            try:
                color = page.locator(".sl-recolor-color select")
                color.wait_for(timeout=RENDER_TIMEOUT)
                recolor_readout = page.locator(".sl-recolor-readout")
                epsilon_readout = page.locator(".sl-epsilon-readout")
                expect(recolor_readout).to_contain_text(RECOLOR_RESULT, timeout=UPDATE_TIMEOUT)
                expect(epsilon_readout).to_contain_text(EPSILON_RESULT, timeout=UPDATE_TIMEOUT)
            except AssertionError as exc:
                shoot(page, "failed-render")
                raise AssertionError(f"{exc}\nvoila log:\n{dashboard['log'].read_text(errors='replace')[-3000:]}"
                                     f"\n{problems}") from None
            fit_viewport(page)
            shoot(page, "dashboard")

            # The color control: any other color than the current one changes the predictions shown.
            before = recolor_readout.text_content()
            current = color.input_value()
            other = next(value for value in color.locator("option").evaluate_all("os => os.map(o => o.value)")
                         if value != current)
            color.select_option(other)
            expect(recolor_readout).not_to_have_text(before, timeout=UPDATE_TIMEOUT)
            expect(recolor_readout).to_contain_text(RECOLOR_RESULT, timeout=UPDATE_TIMEOUT)
            recolored = recolor_readout.text_content()
            shoot(page, "recolored")
            assert RECOLOR_RESULT.findall(recolored) != RECOLOR_RESULT.findall(before), \
                f"color {current} -> {other}, predictions did not change:\n{before}\n->\n{recolored}"

            # The epsilon slider (noUiSlider): keyboard on its handle, to the far end of its range.
            before = epsilon_readout.text_content()
            handle = page.locator(".sl-epsilon .noUi-handle")
            at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
            handle.focus()
            handle.press("Home" if at_max else "End")
            expect(epsilon_readout).not_to_have_text(before, timeout=UPDATE_TIMEOUT)
            expect(epsilon_readout).to_contain_text(EPSILON_RESULT, timeout=UPDATE_TIMEOUT)
            after = epsilon_readout.text_content()
            shoot(page, "attacked")
        finally:
            browser.close()

    confidences = lambda text: [float(p) for _, p in EPSILON_RESULT.findall(text)]  # noqa: E731
    assert confidences(after) != confidences(before), f"epsilon moved, confidences did not:\n{before}\n->\n{after}"
