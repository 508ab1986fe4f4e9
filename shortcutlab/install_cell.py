"""The first code cell of every released lesson: where shortcutlab is missing (Colab, Kaggle, a JupyterHub image) it
installs the course's edition from course.yml's ``student_edition.url``; where shortcutlab imports (the repository's
``make lab``, the grader, nbgrader) it does nothing. The cell cannot use shortcutlab, so it is plain Python."""
from __future__ import annotations

INSTALL_CELL_ID = "install-shortcutlab"
_URL = "EDITION_URL_PLACEHOLDER"

_TEMPLATE = '''# Where shortcutlab is missing (Colab, Kaggle, a JupyterHub image), this installs the course's edition of it;
# where it imports, this cell does nothing. Run it first.
import importlib.util

EDITION = EDITION_URL_PLACEHOLDER  # course.yml's student_edition.url: a wheel's URL or path
if importlib.util.find_spec("shortcutlab") is None:
    import subprocess
    import sys

    if EDITION is None:
        raise RuntimeError("shortcutlab is not installed here, and this course names no edition to install. In the "
                           "course's repository, open the lessons with `make lab`; otherwise ask your instructor "
                           "for the course's wheel and run `%pip install <the wheel>` in a cell.")
    print("installing shortcutlab from", EDITION)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--timeout", "15", "--retries", "0", EDITION], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError("could not install shortcutlab from " + EDITION + " (offline, or a wrong address?): "
                           + done.stderr.strip()[-1500:])
    importlib.invalidate_caches()
    print("shortcutlab is installed")'''


def install_cell_source(url: str | None) -> str:
    """The install cell's code for the edition at ``url`` (a wheel's URL or path; None: the course names none)."""
    return _TEMPLATE.replace(_URL, repr(url))
