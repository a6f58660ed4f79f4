"""The web page's onnxruntime-web files: where they are and the one command that fetches them.

onnxruntime-web (MIT licence) is 14 MB of wasm, too large to ship inside the package, so
`mmali-web --fetch_runtime` downloads its npm tarball once from the npm registry
(`ORT_TARBALL`), checks it against the sha512 pinned here (`ORT_INTEGRITY`, the value npm's
package-lock.json records for the same version), and extracts the three files the page loads
(`ORT_FILES`) into a per-user cache directory. A repository checkout where
`npm ci --prefix examples/web` filled `examples/web/node_modules` uses those files instead.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from mmali_tf.data.cache import cache_root

ORT_VERSION = "1.30.0"
ORT_TARBALL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_VERSION}.tgz"
#: npm's integrity field of onnxruntime-web 1.30.0 (examples/web/package-lock.json).
ORT_INTEGRITY = ("sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmR"
                 "MDs1SigqR4CXAfKYQ==")
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
#: the tarball is about 33 MB; anything much larger is not the pinned package.
MAX_TARBALL_BYTES = 128 << 20
REPO_ORT_DIR = (Path(__file__).resolve().parents[2] / "examples" / "web" / "node_modules"
                / "onnxruntime-web" / "dist")
FETCH_COMMAND = "mmali-web --fetch_runtime"


def cache_dir() -> Path:
    """Where `fetch` puts the files: the datasets' cache root ($MMALI_CACHE, else
    ~/.cache/mmali_tf), in a folder named after the onnxruntime-web version."""
    return Path(cache_root({})) / f"onnxruntime-web-{ORT_VERSION}"


def has_files(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds every file the page loads."""
    return all((Path(directory) / f).is_file() for f in ORT_FILES)


def default_dir() -> Path:
    """The repository's npm-installed files when present, else the fetched cache."""
    return REPO_ORT_DIR if has_files(REPO_ORT_DIR) else cache_dir()


def check_dir(directory: str | os.PathLike) -> None:
    """FileNotFoundError naming the fetch command if `directory` lacks the files."""
    missing = [f for f in ORT_FILES if not (Path(directory) / f).is_file()]
    if missing:
        raise FileNotFoundError(f"onnxruntime-web files {missing} not found in "
                                f"{str(directory)!r}; run `{FETCH_COMMAND}` once (or `npm ci "
                                f"--ignore-scripts --prefix examples/web` in a checkout), or "
                                f"pass --ort_dir=<onnxruntime-web>/dist")


def integrity(data: bytes) -> str:
    """npm's `sha512-<base64>` integrity string of `data`."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def fetch(dest: str | os.PathLike | None = None, url: str = ORT_TARBALL,
          expected: str = ORT_INTEGRITY, timeout: float = 300.0) -> Path:
    """Download the pinned onnxruntime-web tarball, check its sha512 and extract `ORT_FILES`
    into `dest` (default `cache_dir()`), atomically; returns `dest`. A ValueError names a
    tarball that is not the pinned one."""
    dest = Path(dest) if dest is not None else cache_dir()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data = response.read(MAX_TARBALL_BYTES + 1)
    if len(data) > MAX_TARBALL_BYTES:
        raise ValueError(f"{url} is larger than {MAX_TARBALL_BYTES} bytes; not the pinned "
                         f"onnxruntime-web {ORT_VERSION} tarball")
    got = integrity(data)
    if got != expected:
        raise ValueError(f"{url} has integrity {got}, not the pinned {expected}; refusing it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for name in ORT_FILES:
                member = tar.getmember(f"package/dist/{name}")
                if not member.isfile():
                    raise ValueError(f"{url}: package/dist/{name} is not a regular file")
                with tar.extractfile(member) as src, open(tmp / name, "wb") as out:
                    shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o755)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except KeyError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"{url} lacks {error.args[0]}; not an onnxruntime-web package") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
