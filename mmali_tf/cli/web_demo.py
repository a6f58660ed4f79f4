"""A static web page that translates between modalities in the browser (onnxruntime-web, wasm).

    mmali-web --fetch_runtime                  # once: onnxruntime-web from the npm registry
    mmali-web --serve [--port=8000]            # the shipped digits bundle's page, served locally
    mmali-web --bundle=bundles/digits_mmali --out=web/      # build a bundle's page
    mmali-web --serve --out=web/                            # serve a built page
    mmali-web --bundle=bundles/digits_mmali --screenshot=docs/web_demo.png

The page (mmali_tf/web, package data: HTML + JS modules, no build step) loads the bundle's
manifest, its translate graphs and shared weights; the user draws on a canvas, opens an image
file or clicks a test example, picks source and target and sees several samples, with the
style/content controls the graphs expose. Without --bundle the page uses the bundle shipped
with the package (`mmali_tf.export.shipped`). The onnxruntime-web files come from
`--fetch_runtime` (`mmali_tf.cli.web_runtime`), from `npm ci --prefix examples/web` in a
checkout, or from --ort_dir; the page fetches nothing outside its own origin. `--serve` adds
the cross-origin isolation headers onnxruntime-web needs for wasm threads; any static server
that sends them works.
`--screenshot` builds into a temporary directory, opens it in headless Chromium and writes a
PNG; `--timings` prints page-load time and per-translation latency with 1 and N threads.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping


import numpy as np
from absl import app, flags

from mmali_tf.cli import web_runtime
from mmali_tf.export import bundle_files
from mmali_tf.export import manifest as manifest_lib
from mmali_tf.export.errors import first_line
from mmali_tf import cli

ROOT = Path(__file__).resolve().parents[2]
PAGE_DIR = Path(__file__).resolve().parents[1] / "web"
PAGE_FILES = tuple(PAGE_DIR / name for name in ("index.html", "app.mjs", "style.css",
                                                 "mmali_bundle.mjs"))
ORT_FILES = web_runtime.ORT_FILES
#: headers that make the page cross-origin isolated (SharedArrayBuffer, hence wasm threads).
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin",
                     "Cross-Origin-Embedder-Policy": "require-corp",
                     "Cross-Origin-Resource-Policy": "same-origin"}
MIME_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
              ".onnx": "application/octet-stream", ".bin": "application/octet-stream",
              ".json": "application/json"}


def translate_graphs(manifest: Mapping[str, Any]) -> list[str]:
    """Names of the bundle's translate graphs."""
    return [name for name, g in manifest["graphs"].items() if g.get("role") == "translate"]


def examples_json(examples: Mapping[str, tuple[np.ndarray, np.ndarray]],
                  manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Page form of test examples: modality -> {shape, labels, pixels (base64 uint8 HWC)}."""
    specs = {s["name"]: s for s in manifest["modalities"]}
    out = {}
    for name, (x, labels) in examples.items():
        spec = specs[name]
        if spec["kind"] != "image" or tuple(x.shape[1:]) != tuple(spec["shape"]):
            raise ValueError(f"examples for {name!r} have shape {tuple(x.shape)}; expected "
                             f"(n, {', '.join(map(str, spec['shape']))}) of an image modality")
        if x.dtype != np.uint8:
            lo, hi = spec["value_range"]
            x = np.round(np.clip((x - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)
        out[name] = {"shape": list(spec["shape"]), "labels": [int(v) for v in labels],
                     "pixels": base64.b64encode(np.ascontiguousarray(x).tobytes()).decode()}
    return out


def dataset_examples(manifest: Mapping[str, Any], per_modality: int
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Up to `per_modality` test instances of each modality (one per class first), loaded
    through the dataset registry with the bundle's training flags."""
    from mmali_tf import data

    dataset = manifest.get("dataset") or manifest["training_flags"].get("dataset")
    test = data.load(dataset, manifest["training_flags"]).test
    out = {}
    for name, x in test.instances.items():
        labels = np.asarray(test.labels[name])
        _, first = np.unique(labels, return_index=True)
        order = np.concatenate([first, np.setdiff1d(np.arange(len(labels)), first)])
        pick = order[:per_modality]
        out[name] = (np.asarray(x)[pick], labels[pick])
    return out


def build(bundle: str | os.PathLike, out: str | os.PathLike,
          ort_dir: str | os.PathLike | None = None,
          examples: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
          overwrite: bool = False) -> Path:
    """Write the static page for `bundle` into `out` (atomically: a temporary sibling, renamed).

    Args:
      examples: modality -> (images, labels) offered as test examples on the page.
      overwrite: replace an existing `out` (otherwise an existing non-empty `out` is an error).
    """
    bundle, out = Path(bundle), Path(out)
    ort_dir = web_runtime.default_dir() if ort_dir is None else Path(ort_dir)
    _, manifest = bundle_files.open_bundle(bundle)
    graphs = translate_graphs(manifest)
    if not graphs:
        raise ValueError(f"bundle {str(bundle)!r} has no translate graphs; export it with them")
    web_runtime.check_dir(ort_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out={out} exists and is not empty; pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for file in PAGE_FILES:
            shutil.copy2(file, tmp / file.name)
        (tmp / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copy2(ort_dir / name, tmp / "ort" / name)
        (tmp / "bundle").mkdir()
        shutil.copy2(bundle / manifest_lib.MANIFEST_NAME, tmp / "bundle")
        for graph in graphs:
            shutil.copy2(bundle / manifest["graphs"][graph]["file"], tmp / "bundle")
        if manifest.get("external_data"):
            shutil.copy2(bundle / manifest["external_data"], tmp / "bundle")
        if examples:
            (tmp / "examples.json").write_text(json.dumps(examples_json(examples, manifest)))
        os.chmod(tmp, 0o755)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with cross-origin isolation headers and module/wasm MIME types."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def end_headers(self) -> None:
        for key, value in ISOLATION_HEADERS.items():
            self.send_header(key, value)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        pass


def make_server(directory: str | os.PathLike, port: int = 0,
                host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """An HTTP server for `directory` on host:port (0: a free port; see `server_address`)."""
    handler = functools.partial(_Handler, directory=str(directory))
    return http.server.ThreadingHTTPServer((host, port), handler)


@contextlib.contextmanager
def serving(directory: str | os.PathLike) -> Iterator[str]:
    """Serve `directory` on a free loopback port in a thread; yields the base URL."""
    server = make_server(directory)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def open_page(browser: Any, url: str, threads: int) -> dict[str, Any]:
    """Load the page with `threads` wasm threads; returns its start-up record (loadMs, ...)."""
    browser.get(f"{url}index.html?threads={threads}")
    return browser.run_async("return await window.mmali.ready;")


def latency(browser: Any, batch: int = 1, runs: int = 20) -> float:
    """Median ms of one translation (session.run) of `batch` samples of the page's current
    selection (the first 2 of `runs` calls are warm-up)."""
    times = browser.run_async(
        "const {latent_dim, style_dim} = window.mmali.latent(), t = [];"
        "for (let i = 0; i < args[0]; i++) {"
        "  const r = await window.mmali.translate(new Array(args[1] * latent_dim).fill(0.1),"
        "                                         new Array(args[1] * style_dim).fill(-0.1));"
        "  t.push(r.runMs); } return t;", runs, batch)
    return float(np.median(times[2:]))


def measure(page_dir: str | os.PathLike, profile_dir: str | os.PathLike,
            threads: tuple[int, ...] = (1, 2), screenshot: str | os.PathLike | None = None
            ) -> list[dict[str, Any]]:
    """Page-load time (a fresh browser profile, then a reload) and batch-1 translation latency
    in headless Chromium for each wasm thread count; with `screenshot`, also write a PNG of
    the page as it first loads with threads[0]."""
    from mmali_tf.cli.headless import HeadlessChromium

    rows = []
    with serving(page_dir) as url:
        for i, n in enumerate(threads):
            with HeadlessChromium(Path(profile_dir) / f"threads{n}") as browser:
                cold = open_page(browser, url, n)
                if screenshot and i == 0:
                    browser.screenshot(screenshot)
                warm = open_page(browser, url, n)
                rows.append({"threads": warm["threads"], "cold_load_ms": cold["loadMs"],
                             "warm_load_ms": warm["loadMs"], "translate_ms": latency(browser),
                             "translate_batch6_ms": latency(browser, batch=6),
                             "cross_origin_isolated": warm["crossOriginIsolated"]})
    return rows


def define_flags() -> None:
    """Flags of this tool."""
    flags.DEFINE_string("bundle", None, "Bundle directory written by tools/export_onnx.py "
                        "(default: the trained digits mmALI bundle shipped with the package).")
    flags.DEFINE_string("out", None, "Directory of the page (written by a build, served by "
                        "--serve; --serve without a built page builds into a temporary "
                        "directory).")
    flags.DEFINE_string("ort_dir", None, "Directory holding the onnxruntime-web files "
                        f"{', '.join(ORT_FILES)} (default: examples/web/node_modules in a "
                        f"checkout, else the --fetch_runtime cache).")
    flags.DEFINE_boolean("fetch_runtime", False, "Download onnxruntime-web "
                         f"{web_runtime.ORT_VERSION} (MIT, a 33 MB npm tarball, sha512-pinned) "
                         "from the npm registry into the per-user cache and exit.")
    flags.DEFINE_integer("examples", 8, "Test examples per modality shown on the page (from the "
                         "bundle's dataset, when it loads offline; 0: none).", lower_bound=0)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing --out directory.")
    flags.DEFINE_boolean("serve", False, "Serve --out on 127.0.0.1 (cross-origin isolated).")
    flags.DEFINE_integer("port", 8000, "Port of --serve.", lower_bound=0, upper_bound=65535)
    flags.DEFINE_string("screenshot", None, "Build into a temporary directory (unless --out), "
                        "open the page in headless Chromium and write a PNG here.")
    flags.DEFINE_boolean("timings", False, "With --screenshot: print page-load time and "
                         "per-translation latency with 1 and 2 wasm threads.")


def _examples(manifest: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not flags.FLAGS.examples:
        return {}
    try:
        return dataset_examples(manifest, flags.FLAGS.examples)
    except (OSError, ValueError, KeyError) as error:
        print(f"note: no test examples on the page ({str(error).splitlines()[0]}); drawing "
              f"and image files still work", file=sys.stderr)
        return {}


def _serve(directory: str) -> None:
    try:
        server = make_server(directory, flags.FLAGS.port)
    except OSError as error:
        cli.fail(f"--port={flags.FLAGS.port}: cannot listen on 127.0.0.1 ({error.strerror})")
    print(f"serving {directory} at http://127.0.0.1:{server.server_address[1]}/ "
          f"(Ctrl-C stops)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def _bundle() -> str:
    """--bundle, or the shipped bundle after checking it against its pinned digest."""
    if flags.FLAGS.bundle:
        return flags.FLAGS.bundle
    from mmali_tf.export import shipped

    bundle_files.open_bundle(shipped.DIGITS, shipped.digest())
    return str(shipped.DIGITS)


def main(argv: list[str]) -> None:
    cli.reject_positional(argv)
    FLAGS = flags.FLAGS
    if FLAGS.fetch_runtime:
        with cli.user_errors():
            try:
                print(f"fetched onnxruntime-web {web_runtime.ORT_VERSION} into "
                      f"{web_runtime.fetch()}")
            except OSError as error:  # urllib's URLError is an OSError
                raise ValueError(f"cannot download {web_runtime.ORT_TARBALL} "
                                 f"({first_line(error)})") from None
        return
    built = FLAGS.out and (Path(FLAGS.out) / "index.html").is_file()
    if FLAGS.serve and built and not FLAGS.bundle:
        _serve(FLAGS.out)
        return
    if not (FLAGS.out or FLAGS.screenshot or FLAGS.serve):
        cli.fail("give --serve (the shipped bundle's page), --bundle and --out (build), "
                 "--serve --out (serve a built page) or --screenshot")
    with cli.user_errors(), tempfile.TemporaryDirectory() as tmp:
        bundle = _bundle()
        _, manifest = bundle_files.open_bundle(bundle)
        ort_dir = FLAGS.ort_dir or web_runtime.default_dir()
        web_runtime.check_dir(ort_dir)
        out = FLAGS.out or os.path.join(tmp, "page")
        build(bundle, out, ort_dir, _examples(manifest), FLAGS.overwrite)
        print(f"wrote the page to {out}")
        if FLAGS.serve:
            _serve(out)
        elif FLAGS.screenshot:
            shot = Path(FLAGS.screenshot)
            partial = shot.with_name(f".{shot.name}.partial")
            rows = measure(out, os.path.join(tmp, "chromium"),
                           threads=(1, 2) if FLAGS.timings else (1,), screenshot=partial)
            partial.replace(shot)
            print(f"wrote {shot}")
            for row in rows if FLAGS.timings else ():
                print(f"wasm threads={row['threads']} (cross-origin isolated: "
                      f"{row['cross_origin_isolated']}): first translation shown "
                      f"{row['cold_load_ms']:.0f} ms after navigation (fresh profile), "
                      f"{row['warm_load_ms']:.0f} ms on reload; translation of 1 sample "
                      f"{row['translate_ms']:.2f} ms, of 6 samples (the page's default) "
                      f"{row['translate_batch6_ms']:.2f} ms (medians of 18)")


def run() -> None:
    """Console-script entry point (`mmali-web`)."""
    define_flags()
    cli.usage_from(__doc__)
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
