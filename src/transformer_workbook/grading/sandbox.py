"""Where a submission runs: its scratch folder, its environment, the limits of
its kernel process, and the checks on what it changed outside.

None of this is a security boundary (see ``book/instructors.md``): it keeps an
honest or clumsy notebook from disturbing the grader, the instructor's files
and the other submissions, and detects and undoes what a hostile one does in
its own folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import sys
import tempfile

MAX_NOTEBOOK_BYTES = 50 * 2**20
KERNEL_NAME = "transformer-workbook-grader"
SCRATCH_FOLDERS = ("work", "home", "tmp", "grader")

# The kernel launcher: sets the limits, then becomes the IPython kernel (exec
# keeps the process id, so the limits and the process group are the kernel's).
# No braces in this code: jupyter_client formats every argument of a kernel
# command with {connection_file}-style fields.
LAUNCHER = """\
import os, resource, sys
for name, var in (("RLIMIT_AS", "TW_GRADER_MEMORY_BYTES"), ("RLIMIT_FSIZE", "TW_GRADER_FILE_BYTES")):
    limit = int(os.environ.pop(var, "0") or 0)
    if limit > 0:
        resource.setrlimit(getattr(resource, name), (limit, limit))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", "-f", sys.argv[1]])
"""

# Environment variables passed on to the learner's kernel; everything else
# (tokens, credentials, the instructor's paths) is left out.
ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "VIRTUAL_ENV",
            "SYSTEMROOT")
# The variable that marks every process of one submission (see kill_marked).
MARKER_VAR = "TW_GRADER_SUBMISSION"


def make_scratch(root: pathlib.Path) -> pathlib.Path:
    """A new scratch folder under ``root`` with ``work/``, ``home/``, ``tmp/`` and ``grader/``."""
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="sub-", dir=root))
    for sub in SCRATCH_FOLDERS:
        (scratch / sub).mkdir()
    return scratch


def kernel_spec_dir(root: pathlib.Path) -> pathlib.Path:
    """A kernel-spec folder whose one kernel starts through :data:`LAUNCHER` (made once per root)."""
    spec = root / "kernels" / KERNEL_NAME
    if not (spec / "kernel.json").exists():
        spec.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-c", LAUNCHER, "{connection_file}"]
        tmp = spec / f"kernel.json.{os.getpid()}"
        tmp.write_text(json.dumps({"argv": argv, "display_name": "Grader (Python 3)",
                                   "language": "python", "interrupt_mode": "signal"}))
        os.replace(tmp, spec / "kernel.json")
    return root / "kernels"


def kernel_env(scratch: pathlib.Path, marker: str, memory_mb: int, file_mb: int) -> dict[str, str]:
    """The kernel's whole environment: a few harmless variables, and homes inside ``scratch``."""
    env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
    home, tmp = scratch / "home", scratch / "tmp"
    env.update(
        HOME=str(home),
        TMPDIR=str(tmp), TMP=str(tmp), TEMP=str(tmp),
        IPYTHONDIR=str(home / ".ipython"),
        MPLCONFIGDIR=str(home / ".config" / "matplotlib"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        JUPYTER_RUNTIME_DIR=str(home / ".jupyter-runtime"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONNOUSERSITE="1",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MALLOC_ARENA_MAX="2",
        CUDA_VISIBLE_DEVICES="",
        TW_GRADER_MEMORY_BYTES=str(int(memory_mb) * 2**20),
        TW_GRADER_FILE_BYTES=str(int(file_mb) * 2**20),
    )
    env[MARKER_VAR] = marker
    return env


def kill_marked(marker: str) -> None:
    """Kill every process whose environment carries ``marker`` (children that escaped the group)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    proc = pathlib.Path("/proc")
    if not proc.is_dir():
        return
    for d in proc.iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                os.kill(int(d.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def folder_state(folder: pathlib.Path, limit: int = 5000) -> dict[str, tuple]:
    """Name -> (size, mtime, inode) of the entries of ``folder`` (not recursive)."""
    state: dict[str, tuple] = {}
    try:
        with os.scandir(folder) as it:
            for i, entry in enumerate(it):
                if i >= limit:
                    break
                try:
                    st = entry.stat(follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False):  # a folder: only its identity
                        state[entry.name] = ("folder", st.st_ino)
                    else:
                        state[entry.name] = (st.st_size, st.st_mtime_ns, st.st_ino)
                except OSError:
                    state[entry.name] = ("?",)
    except OSError:
        pass
    return state


def folder_changes(before: dict, after: dict) -> list[str]:
    """``["created x", "deleted y", "modified z"]`` between two :func:`folder_state` snapshots."""
    changes = [f"created {n}" for n in sorted(after.keys() - before.keys())]
    changes += [f"deleted {n}" for n in sorted(before.keys() - after.keys())]
    changes += [f"modified {n}" for n in sorted(before.keys() & after.keys()) if before[n] != after[n]]
    return changes


def restore_file(path: pathlib.Path, data: bytes) -> None:
    """Put ``data`` back at ``path`` (replacing, never writing through, a link)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tw-restore-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
