"""Every notebook, run the way Colab runs it, and its stored outputs verified (nbval).

Colab opens a notebook from GitHub, alone, in a runtime that has torch, numpy,
matplotlib, ipywidgets 7.7.1 and IPython 7.34 but not the course; the notebook's
setup cell installs the course package with `pip install --no-deps git+<repository>`.
This test does the same, as closely as a machine without Colab can:

- a separate virtual environment, `.venv/colab-like`, with only what
  `tests/colab_like_requirements.txt` lists (Colab's preinstalled packages, exact
  pins), built once and reused while that file is unchanged;
- `google.colab` importable (an empty package on the kernel's PYTHONPATH) and
  imported at kernel start (an IPython startup file), so the setup cell takes its
  Colab branch;
- git's `url.<base>.insteadOf` (in a GIT_CONFIG_GLOBAL file) sends the setup cell's
  `git+https://github.com/...` to a snapshot of this working tree, and pip runs
  offline (no index; the build uses the environment's setuptools);
- each notebook copied alone to a folder outside the repository, then executed
  by nbval with that environment's kernel, comparing every output with the stored
  one (the sanitizer `tests/nbval_sanitize.cfg`, the `nbval-*` cell tags).

One execution per notebook does both jobs: the stored outputs are verified and the
Colab-like run is real. The package starts uninstalled from the environment, and
the test checks afterwards that the setup cell installed it from the snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import venv

import pytest
import yaml

pytestmark = pytest.mark.colab

ROOT = pathlib.Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "tests" / "colab_like_requirements.txt"
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
VENV = ROOT / ".venv" / "colab-like"
KERNEL = "tw-colab-like"
FOLDERS = ("notebooks", "solutions", "exercises")
NOTEBOOKS = [p for folder in FOLDERS for p in sorted((ROOT / folder).glob("*.ipynb"))]


def _python(env_dir: pathlib.Path) -> pathlib.Path:
    return env_dir / "bin" / "python"


def _requirements():
    """(resolved, no_deps): the lines before and after the '# no-deps' comment."""
    resolved, no_deps, target = [], [], None
    for line in REQUIREMENTS.read_text().splitlines():
        if line.startswith("# no-deps"):
            target = no_deps
        elif line.strip() and not line.startswith("#"):
            (no_deps if target is no_deps else resolved).append(line.strip())
    return resolved, no_deps


def _pip(*args):
    proc = subprocess.run([str(_python(VENV)), "-m", "pip", *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"pip {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def ensure_colab_like_venv() -> pathlib.Path:
    """`.venv/colab-like`, (re)built when tests/colab_like_requirements.txt changed."""
    stamp = VENV / ".requirements-sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == wanted and _python(VENV).exists()):
        shutil.rmtree(VENV, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        resolved, no_deps = _requirements()
        _pip("install", "-q", *resolved)
        _pip("install", "-q", "--no-deps", *no_deps)
        stamp.write_text(wanted)
    # Start without the course package: the notebooks' setup cells must install it.
    _pip("uninstall", "-q", "-y", "transformer-workbook")
    return VENV


def _snapshot_of_working_tree(dest: pathlib.Path) -> pathlib.Path:
    """A one-commit git repository of what pip needs to build the package, as it is now."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "src", dest / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "init.defaultBranch=main"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run([*git, *cmd], cwd=dest, check=True, capture_output=True)
    return dest


@pytest.fixture(scope="session")
def colab(tmp_path_factory):
    """Everything the runs share: the environment, the kernel spec, the fake Colab."""
    env_dir = ensure_colab_like_venv()
    base = tmp_path_factory.mktemp("colab")
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    snapshot = _snapshot_of_working_tree(base / "repository")
    gitconfig = base / "gitconfig"
    gitconfig.write_text(f'[url "file://{snapshot}"]\n\tinsteadOf = {url}\n')
    # `import google.colab` works, and the kernel imports it at start, as on Colab.
    (base / "sim" / "google" / "colab").mkdir(parents=True)
    (base / "sim" / "google" / "colab" / "__init__.py").write_text('"""Stands in for Colab\'s module."""\n')
    startup = base / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # noqa: F401 (Colab's kernel has it loaded)\n")
    spec = base / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    kernel_env = {
        "PYTHONPATH": str(base / "sim"),
        "IPYTHONDIR": str(base / "ipython"),
        "GIT_CONFIG_GLOBAL": str(gitconfig),
        "GIT_CONFIG_NOSYSTEM": "1",
        # pip offline: no index, and the build uses the environment's setuptools.
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_FIND_LINKS": "",
        "PIP_CONSTRAINT": "",
    }
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(_python(env_dir)), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (Colab-like)",
        "language": "python",
        "env": kernel_env,
    }, indent=1))
    return {"base": base, "jupyter_path": base / "jupyter", "env_dir": env_dir, "snapshot": snapshot}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_runs_as_on_colab_and_reproduces_its_outputs(colab, path):
    rel = path.relative_to(ROOT)
    # Alone in a folder outside the repository, as Colab opens it.
    workdir = colab["base"] / "run" / rel.parent.name
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / path.name
    shutil.copy2(path, copy)
    env = dict(os.environ, JUPYTER_PATH=str(colab["jupyter_path"]), PYDEVD_DISABLE_FILE_VALIDATION="1")
    env.pop("PYTHONPATH", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(workdir),
           "--nbval", "--nbval-kernel-name", KERNEL, "--nbval-sanitize-with", str(SANITIZE),
           "--nbval-cell-timeout=300", str(copy)]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (
        f"{rel} in the Colab-like runtime (nbval, outputs compared with the stored ones):\n"
        + (proc.stdout + proc.stderr)[-6000:]
    )
    # The setup cell really installed the course from the (snapshot of the) repository.
    where = subprocess.run(
        [str(_python(colab["env_dir"])), "-c", "import transformer_workbook as t; print(t.__file__)"],
        capture_output=True, text=True, cwd=colab["base"], env={"PATH": os.environ.get("PATH", "")},
    )
    assert where.returncode == 0, f"{rel}: the setup cell did not install the course package:\n{where.stderr}"
    assert str(colab["env_dir"]) in where.stdout and str(ROOT / "src") not in where.stdout, where.stdout
