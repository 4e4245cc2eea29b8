"""fusetrace installed like a package: sdist, wheel from the sdist, a fresh venv outside the
checkout, and the commands that need shipped files, run from outside the checkout.

The venv gets the wheel only (``--no-deps --no-index``: no registry needed); the runtime
dependencies (click, rich, construct) are borrowed from the interpreter running the tests by a
path in a .pth file. That file adds a directory to sys.path without running its .pth files,
so this checkout's editable install stays out of the venv, and fusetrace itself is imported
from the wheel (the test asserts it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import click
import pytest

import fusetrace

ROOT = Path(__file__).resolve().parent.parent
#: what the sdist is built from is copied first, so the build writes nothing into the checkout
SKIP = {".git", ".venv", "build", "dist", "tests", "captures", "bench", "demo-out"}


def _copy_source(dest: Path) -> Path:
    def ignore(directory: str, names: list[str]) -> set[str]:
        top = Path(directory) == ROOT
        return {
            n
            for n in names
            if (top and n in SKIP)
            or n.endswith((".egg-info", "_cache"))
            or n in ("__pycache__", ".hypothesis")
        }

    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    (dest / "fusetrace" / "data" / "protocol.md").unlink(missing_ok=True)
    return dest


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload,no-any-return]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("packaging")
    src = _copy_source(base / "src")
    dist = base / "dist"
    built = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)])
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = list(dist.glob("fusetrace-*.whl"))
    sdists = list(dist.glob("fusetrace-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(dist.iterdir())
    venv = base / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    got = _run([*pip, "install", "--quiet", "--no-deps", "--no-index", str(wheels[0])])
    assert got.returncode == 0, got.stdout + got.stderr
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    deps = Path(click.__file__).resolve().parent.parent
    Path(site.stdout.strip(), "fusetrace-test-deps.pth").write_text(f"{deps}\n")
    work = base / "elsewhere"
    work.mkdir()
    return {"venv": venv, "wheel": wheels[0], "sdist": sdists[0], "cwd": work}


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MANPATH")}
    env["PATH"] = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    env["MANPAGER"] = env["PAGER"] = "cat"
    env["MANWIDTH"] = "100"
    return env


def _cmd(installed: dict[str, Path], *argv: str) -> subprocess.CompletedProcess[str]:
    return _run(list(argv), cwd=installed["cwd"], env=_env(installed["venv"]))


def test_the_venv_imports_fusetrace_from_the_wheel(installed: dict[str, Path]) -> None:
    out = _cmd(installed, "python", "-c", "import fusetrace; print(fusetrace.__file__)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(installed["venv"]))


def test_version_comes_from_one_place(installed: dict[str, Path]) -> None:
    out = _cmd(installed, "fusetrace", "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"fusetrace, version {fusetrace.__version__}"
    assert installed["wheel"].name.startswith(f"fusetrace-{fusetrace.__version__}-")
    with zipfile.ZipFile(installed["wheel"]) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        text = whl.read(meta).decode()
    assert f"\nVersion: {fusetrace.__version__}\n" in text
    assert {"click", "rich", "construct"} <= set(re.findall(r"^Requires-Dist: (\w+)", text, re.M))
    # the capture's section header names the same version
    capture = installed["cwd"] / "v.pcapng"
    script = (
        "import sys\n"
        "from fusetrace.capture.files import host_writer, open_capture\n"
        "with open(sys.argv[1], 'wb') as f:\n"
        "    host_writer(f, {}).flush()\n"
        "with open_capture(sys.argv[1]) as r:\n"
        "    print(r.info.userappl)\n"
    )
    out = _cmd(installed, "python", "-c", script, str(capture))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"fusetrace {fusetrace.__version__}"


def test_explain_quotes_the_protocol_reference(installed: dict[str, Path]) -> None:
    out = _cmd(installed, "fusetrace", "explain", "FT101")
    assert out.returncode == 0, out.stderr
    w6 = next(ln for ln in (ROOT / "docs/protocol.md").read_text().splitlines() if "| W6 |" in ln)
    assert "FT101 reply-unknown-unique" in out.stdout
    assert "protocol.md §5.3 (W6): Validation of a D→K write" in out.stdout
    assert w6 in out.stdout
    assert str(ROOT) not in out.stdout and str(ROOT) not in out.stderr


def test_wireshark_plugin_path_is_the_shipped_file(installed: dict[str, Path]) -> None:
    out = _cmd(installed, "fusetrace", "wireshark-plugin", "--print-path")
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path.is_file() and str(path).startswith(str(installed["venv"]))
    assert path.read_bytes() == (ROOT / "fusetrace" / "data" / "fuse.lua").read_bytes()


def test_man_finds_the_pages_of_the_venv(installed: dict[str, Path]) -> None:
    assert shutil.which("man"), "man-db is missing (scripts/install-deps installs it)"
    where = _cmd(installed, "man", "-w", "fusetrace")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip() == str(installed["venv"] / "share/man/man1/fusetrace.1")
    pages = sorted(p.name for p in (installed["venv"] / "share/man/man1").iterdir())
    assert pages == sorted(p.name for p in (ROOT / "man").glob("*.1"))
    page = _cmd(installed, "man", "fusetrace")
    assert page.returncode == 0, page.stderr
    assert "fusetrace" in page.stdout and "SYNOPSIS" in page.stdout


def test_the_sdist_carries_the_sources_of_the_shipped_files(installed: dict[str, Path]) -> None:
    import tarfile

    with tarfile.open(installed["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    expected = {"docs/protocol.md", "setup.py", "fusetrace/data/fuse.lua"}
    expected |= {f"man/{p.name}" for p in (ROOT / "man").glob("*.1")}
    assert expected <= names
