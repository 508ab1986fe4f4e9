"""The OS sandbox of grading servers: bubblewrap (``bwrap``), when it can run here.

Each grading server (the process that imports torch once and forks one process per submission) starts inside
``bwrap`` with no network (``--unshare-net``), its own process tree (``--unshare-pid``, all of it killed with the
server: ``--die-with-parent``), no terminal (``--new-session``), an empty environment but for what grading needs
(``--clearenv``), and a filesystem made of read-only binds of the Python environment and shortcutlab's own
package only, plus a size-capped private ``/tmp`` (tmpfs) that is the working, temp and home folder of every
submission. The course's check files are bound read-only into a folder only the server's user can open. No other
submission, no gradebook or output folder, no home folder is visible; the library modules holding the answer key
(the references and their helpers) are readable by the server alone, which imports them before any submission runs.
Inside, each submission's process drops to
an unprivileged uid of its own server (``SANDBOX_UID_ENV``) before its resource limits (``RLIMIT_NPROC`` among
them: root ignores it) are applied, and every process of that uid is killed when the submission ends.

Where ``bwrap`` is missing or cannot create its namespaces (probed once per run with a trivial command), grading
falls back to the forked processes alone and says so.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from shortcutlab.edition.answer_code import PACKAGE, module_path
from shortcutlab.grading.engine.environment import GRADING_ENV
from shortcutlab.grading.engine.limits import SANDBOX_PROBE_TIMEOUT, SCRATCH_BYTES

BUBBLEWRAP, NONE = "bubblewrap", "none"
SANDBOX_UID_ENV = "SHORTCUTLAB_SANDBOX_UID"  # set inside the sandbox: the uid student code runs as
SANDBOX_ENV = "SHORTCUTLAB_SANDBOX"  # "none" forces grading without the sandbox, "bubblewrap" requires it
CHECKS_DIR = "/grader/checks"  # where the check files appear inside (a folder only the server's user can open)
UID_BASE, UID_SPAN = 300_000, 100_000  # student uids are drawn from here (no account has them)
KEPT_ENV = ("LANG", "LC_ALL", "TZ")


def bwrap() -> str | None:
    return shutil.which("bwrap")


def _python_roots() -> list[str]:
    """Folders the interpreter and its packages live in (the virtual environment, the base install)."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(sys.executable).resolve().parent.parent)}
    return sorted(r for r in roots if r and os.path.isdir(r))


def _system_binds() -> list[str]:
    """/usr, the top-level links into it (/bin, /lib, ...), and the few /etc files the loader and Python use."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime"):
        args += ["--ro-bind-try", path, path]
    return args


def answer_files(package_root: str | Path, modules: Iterable[str]) -> list[Path]:
    """The files of ``modules`` (the shortcutlab modules holding the course's references and their helpers) under
    ``package_root``: each module's source and any bytecode cached for it."""
    found: list[Path] = []
    for module in dict.fromkeys(modules):
        source = module_path(Path(package_root) / PACKAGE, module)
        if source is not None:
            found.append(source)
            found.extend(sorted(source.parent.glob(f"__pycache__/{source.stem}.*.pyc")))
    return found


def command(argv: list[str], env: dict[str, str], package_root: str | Path, check_files: dict[str, str] = {},
            scratch_bytes: int = SCRATCH_BYTES, private: dict[str, int] = {}) -> list[str]:
    """``argv`` wrapped in bwrap: see the module's doc. ``env`` is all the environment it gets; ``check_files`` maps
    each check file's path inside (under CHECKS_DIR) to its path here; ``private`` maps files of the package to a
    descriptor open on their content: each is replaced by a copy only the server's user can read (``answer_files``:
    the server has imported them before any student code runs; student code, under its own uid, cannot read the
    answer key's text)."""
    args = [bwrap() or "bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--die-with-parent", "--new-session", "--clearenv", "--proc", "/proc", "--dev", "/dev",
            *_system_binds()]
    package = Path(package_root) / "shortcutlab"
    binds = [*_python_roots(), str(package)]
    # The folders above each bind are made world-traversable (bwrap would copy a private home's 0700): student
    # code, under a uid of its own, must reach the interpreter's files, not only what the server imported.
    above = sorted({str(parent) for bind in binds for parent in Path(bind).parents if str(parent) != "/"} -
                   {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}, key=lambda p: (p.count("/"), p))
    # The scratch /tmp comes first: binds that live under /tmp on the host (a clone or a Gradescope bundle there)
    # are then mounted over it, instead of being hidden by it.
    args += ["--size", str(scratch_bytes), "--tmpfs", "/tmp"]
    for folder in above:
        args += ["--perms", "0755", "--dir", folder]
    for bind in binds:
        args += ["--ro-bind", bind, bind]
    for path, fd in sorted(private.items()):
        args += ["--perms", "0600", "--ro-bind-data", str(fd), path]
    args += ["--perms", "0700", "--dir", "/grader", "--perms", "0700", "--dir", CHECKS_DIR]
    for inside, outside in sorted(check_files.items()):
        args += ["--ro-bind", outside, inside]
    for key, value in sorted(env.items()):
        args += ["--setenv", key, value]
    args += ["--chdir", "/tmp", "--", *argv]
    return args


def sandbox_env(base: dict[str, str], uid: int) -> dict[str, str]:
    """The environment inside: grading's own variables (``base``: threads, plotting, PYTHONPATH), a PATH, /tmp as
    home and temp folder, the locale, and nothing else of the grader's environment (no secrets)."""
    env = {key: value for key, value in base.items()
           if key in GRADING_ENV or key in ("PYTHONPATH", "SHORTCUTLAB_OFFLINE") or key in KEPT_ENV}
    env.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
               HOME="/tmp", TMPDIR="/tmp", SHORTCUTLAB_CACHE="/tmp/.shortcutlab-cache", MPLCONFIGDIR="/tmp/.matplotlib")
    env[SANDBOX_UID_ENV] = str(uid)
    return env


@functools.lru_cache(maxsize=None)
def why_no_sandbox(package_root: str) -> str | None:
    """None if bwrap can run a trivial Python here with the sandbox's options, else why not (asked once)."""
    if bwrap() is None:
        return "bwrap (Debian package bubblewrap) is not installed"
    argv = command([sys.executable, "-c", "pass"], {"PATH": "/usr/bin:/bin"}, package_root, scratch_bytes=1 << 20)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SANDBOX_PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not run: {exc}"
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return f"bwrap cannot create its sandbox here ({why}; are user namespaces disabled?)"
    return None


def choose(package_root: str | Path, require: bool = False) -> tuple[str, str | None]:
    """(BUBBLEWRAP or NONE, why not): the sandbox this run gets. ``SHORTCUTLAB_SANDBOX=none`` turns it off (the
    benchmark compares the two), ``=bubblewrap`` requires it like ``require``."""
    wanted = os.environ.get(SANDBOX_ENV, "").strip().lower()
    if wanted == NONE and not require:
        return NONE, f"{SANDBOX_ENV}=none"
    why = why_no_sandbox(str(Path(package_root).resolve()))
    return (BUBBLEWRAP, None) if why is None else (NONE, why)


# ----------------------------------------------------------------------------- inside the sandbox


def student_uid() -> int | None:
    """The uid student code runs as inside the sandbox (None outside it, or where we cannot switch uid)."""
    raw = os.environ.get(SANDBOX_UID_ENV, "")
    if not raw.isdigit() or os.geteuid() != 0:
        return None
    return int(raw)


def drop_privileges(uid: int) -> None:
    """Become ``uid`` (and the group of the same number), with no supplementary groups, for good."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def kill_uid(uid: int, rounds: int = 20) -> int:
    """SIGKILL every process of ``uid`` (the sandbox's own /proc: only this server's processes), one pid at a time,
    until none is left; how many were killed."""
    killed = 0
    for _ in range(rounds):
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/status", "rb") as status:
                    for line in status:
                        if line.startswith(b"Uid:"):
                            if int(line.split()[1]) == uid:
                                found.append(int(name))
                            break
            except (OSError, ValueError, IndexError):
                continue
        found = [pid for pid in found if pid > 1 and pid != os.getpid()]
        if not found:
            return killed
        for pid in found:
            try:
                os.kill(pid, 9)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        for pid in found:  # reap those that are our children
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
    return killed
