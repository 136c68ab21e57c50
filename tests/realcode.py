"""Real code for the codemod's tests: pinned sdists from PyPI, and the tools run on them.

The real-code tests migrate released projects. Each one is named here by
version and sha256, found through the package index's JSON simple API
(PEP 691, what pip reads), downloaded once into
``$CONTEXTTHREADS_SDIST_CACHE`` (default ``contextthreads-tests/sdists`` under
``$XDG_CACHE_HOME`` or ``~/.cache``),
checked against its hash, and unpacked there. Offline, the tests that need
one are skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

INDEX = "https://pypi.org/simple"
_TIMEOUT = 60
# Python 3.12+ (and late 3.9-3.11 patch releases) can refuse unsafe members themselves.
_SAFE: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


@dataclass(frozen=True)
class Sdist:
    """One pinned source distribution."""

    project: str
    version: str
    filename: str
    sha256: str


SENTRY = Sdist(
    "sentry-sdk",
    "2.75.0",
    "sentry_sdk-2.75.0.tar.gz",
    "c38ac2d4b2435c11da821e173bb9d9088c98f41ae92f559ce0e424170a8e1a29",
)
ANYIO = Sdist(
    "anyio",
    "4.16.0",
    "anyio-4.16.0.tar.gz",
    "59bb03251907983d1603d27c3087ddb1e93299ea2163adcdba37899a4fb12ffb",
)
OTEL_SDK = Sdist(
    "opentelemetry-sdk",
    "1.45.2",
    "opentelemetry_sdk-1.45.2.tar.gz",
    "7eec4de13dd21ff3a1670dcb0e02079e692736f94d733dfdce5af461d884248d",
)
OTEL_THREADING = Sdist(
    "opentelemetry-instrumentation-threading",
    "0.66b1",
    "opentelemetry_instrumentation_threading-0.66b1.tar.gz",
    "2c217359439d09ca4a4be524db368c05a3cc7f218b85e8086f22664db0a03538",
)
TQDM = Sdist(
    "tqdm",
    "4.70.1",
    "tqdm-4.70.1.tar.gz",
    "cefd0eca11b2a37a3aee776544d4f4ae913f02688135b5556b8788dfa474afc4",
)
APSCHEDULER = Sdist(
    "apscheduler",
    "3.11.3",
    "apscheduler-3.11.3.tar.gz",
    "cd2fcc9330039a81a5893472ad49facf23a6d5604cbe1d918c835c6de7834d5a",
)


def cache_dir() -> Path:
    """Return the cache folder, made if need be."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    default = Path(base) / "contextthreads-tests" / "sdists"
    path = Path(os.environ.get("CONTEXTTHREADS_SDIST_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _url(sdist: Sdist) -> str:
    request = urllib.request.Request(
        f"{INDEX}/{sdist.project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
        page = json.load(response)
    for entry in page["files"]:
        if entry["filename"] == sdist.filename:
            return str(entry["url"])
    raise LookupError(f"{sdist.filename} is not on the index")


def fetch(sdist: Sdist) -> Path:
    """Return the path of ``sdist``'s tarball in the cache; skip the test if it cannot be had."""
    target = cache_dir() / sdist.filename
    if target.is_file() and _digest(target) == sdist.sha256:
        return target
    try:
        with urllib.request.urlopen(_url(sdist), timeout=_TIMEOUT) as response:
            data = response.read()
    except (OSError, LookupError, ValueError) as exc:  # URLError is an OSError
        pytest.skip(f"cannot fetch {sdist.filename} from PyPI (offline?): {exc}")
    if hashlib.sha256(data).hexdigest() != sdist.sha256:
        raise AssertionError(f"{sdist.filename} from PyPI does not match its pinned sha256")
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, target)
    return target


def unpacked(sdist: Sdist) -> Path:
    """Return the folder of ``sdist``'s pristine unpacked tree in the cache (do not modify it)."""
    tarball = fetch(sdist)
    root = cache_dir() / f"{sdist.filename[: -len('.tar.gz')]}-{sdist.sha256[:12]}"
    if not (root / ".complete").is_file():
        shutil.rmtree(root, ignore_errors=True)
        work = Path(tempfile.mkdtemp(dir=root.parent, suffix=".unpacking"))
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                if member.name.startswith("/") or ".." in Path(member.name).parts:
                    raise AssertionError(f"{sdist.filename} holds an unsafe path {member.name}")
                if not (member.isfile() or member.isdir()):
                    continue  # no links or devices from an archive
                archive.extract(member, work, **_SAFE)
        (work / ".complete").write_text(sdist.sha256)
        try:
            os.replace(work, root)
        except OSError:  # another process unpacked it first
            shutil.rmtree(work, ignore_errors=True)
    (top,) = [p for p in root.iterdir() if p.is_dir()]
    return top


def copy_of(sdist: Sdist, into: Path) -> Path:
    """Return a fresh, writable copy of ``sdist``'s tree under ``into``."""
    source = unpacked(sdist)
    return Path(shutil.copytree(source, into / source.name))


def migrate(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m contextthreads.migrate ARGS`` in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "contextthreads.migrate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def isort_findings(root: Path) -> set[Path]:
    """Return the files under ``root`` that ``ruff check --select I`` (defaults) finds unsorted.

    ruff runs from ``root``, so it takes what is there as first party, as the
    codemod does. Skips the test if ruff (in the test extra) is missing.
    """
    command = [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "I"]
    proc = subprocess.run(
        [*command, "--exit-zero", "--output-format", "json", "."],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if "No module named ruff" in proc.stderr:
        pytest.skip("ruff is not installed (it is in the test extra)")
    assert proc.returncode == 0, proc.stderr
    base = root.resolve()
    return {Path(item["filename"]).relative_to(base) for item in json.loads(proc.stdout)}
