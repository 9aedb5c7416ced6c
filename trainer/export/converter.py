"""llama.cpp's HF -> GGUF converters, taken from llama-cpp-python's source distribution.

The installed llama-cpp-python wheel does not carry `convert_hf_to_gguf.py`; its sdist
vendors llama.cpp with the converters and the matching `gguf-py`. We fetch the sdist of
the *installed* version once (`pip download --no-binary :all:`), extract only those files
(and the `conversion` package and templates they import) into
`<cache_dir>/llama-cpp-converter/<version>/`, and run the scripts as subprocesses (they
put the adjacent `gguf-py` first on sys.path themselves).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent.errors import FixloopError

SCRIPTS = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py")
# What the scripts import or read beside themselves: gguf-py, the per-architecture
# `conversion` package (newer llama.cpp) and the chat templates some architectures embed.
PACKAGE_DIRS = ("gguf-py/gguf/", "conversion/", "models/templates/")
SDIST_ENV = "FIXLOOP_LLAMA_CPP_SDIST"  # optional: a local llama_cpp_python-<v>.tar.gz


class ConverterError(FixloopError, RuntimeError):
    """The converter could not be fetched or failed; the message says what to do."""


@dataclass(frozen=True)
class Converter:
    root: Path  # holds the two scripts and gguf-py/
    version: str

    @property
    def hf_script(self) -> Path:
        return self.root / "convert_hf_to_gguf.py"

    @property
    def lora_script(self) -> Path:
        return self.root / "convert_lora_to_gguf.py"

    def run(self, script: Path, args: list[str], *, timeout: float | None = None) -> str:
        """Run a converter script; its combined output, or ConverterError with the tail."""
        env = {**os.environ, "PYTHONPATH": str(self.root / "gguf-py")}
        env.pop("NO_LOCAL_GGUF", None)
        proc = subprocess.run(
            [sys.executable, str(script), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-15:])
            raise ConverterError(f"{script.name} failed (exit {proc.returncode}):\n{tail}")
        return output


def llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConverterError(
            "llama-cpp-python is not installed; install fixloop (`make run`) first."
        ) from exc


def _find_sdist(folder: Path, version: str) -> Path | None:
    for pattern in (f"llama_cpp_python-{version}.tar.gz", f"llama-cpp-python-{version}.tar.gz"):
        hit = folder / pattern
        if hit.is_file():
            return hit
    return None


def fetch_sdist(cache_dir: Path, version: str) -> Path:
    """The sdist tarball: $FIXLOOP_LLAMA_CPP_SDIST, the cache, or `pip download`."""
    override = os.environ.get(SDIST_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise ConverterError(f"{SDIST_ENV}={override} is not a file.")
        return path
    folder = cache_dir / "sdist"
    found = _find_sdist(folder, version)
    if found:
        return found
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"llama-cpp-python=={version}",
        "-d",
        str(folder),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = _find_sdist(folder, version)
    if proc.returncode != 0 or found is None:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise ConverterError(
            f"could not download the llama-cpp-python {version} source distribution "
            f"(needed for llama.cpp's GGUF converter):\n{tail}\n"
            f"Download llama_cpp_python-{version}.tar.gz yourself and set {SDIST_ENV} to it."
        )
    return found


def _wanted(member: str) -> str | None:
    """The path under the converter root for a tar member we keep, else None."""
    marker = "/vendor/llama.cpp/"
    if marker not in member:
        return None
    rel = member.split(marker, 1)[1]
    if rel in SCRIPTS or (rel.startswith(PACKAGE_DIRS) and not rel.endswith("/")):
        return rel
    return None


def extract_converter(sdist: Path, target: Path) -> None:
    """Copy the converter scripts and gguf-py out of the sdist (regular files only)."""
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar.getmembers():
                rel = _wanted(member.name)
                if rel is None or not member.isfile() or ".." in Path(rel).parts:
                    continue
                src = tar.extractfile(member)
                if src is None:
                    continue
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        missing = [s for s in SCRIPTS if not (tmp / s).is_file()]
        if missing or not (tmp / "gguf-py" / "gguf" / "__init__.py").is_file():
            raise ConverterError(
                f"{sdist} does not contain llama.cpp's converter "
                f"(missing: {', '.join(missing) or 'gguf-py'})."
            )
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_converter(cache_dir: Path) -> Converter:
    """The converter matching the installed llama-cpp-python, fetched once and cached."""
    version = llama_cpp_version()
    root = cache_dir / "llama-cpp-converter" / version
    if not all((root / s).is_file() for s in SCRIPTS) or not (root / "gguf-py").is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        extract_converter(fetch_sdist(cache_dir, version), root)
    return Converter(root, version)
