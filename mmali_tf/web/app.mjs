// The web page of tools/web_demo.py: translate a drawing, an image file or a test example with
// the bundle's translate graphs in onnxruntime-web (wasm). Everything about the modalities comes
// from bundle/manifest.json; the page fetches nothing outside its own origin.
import * as ort from "./ort/ort.wasm.min.mjs";
import * as mm from "./mmali_bundle.mjs";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const DRAW_SCALE = 8;
const PAD = 2;
const OUTPUT_SCALE = 4;

const threads = Number(params.get("threads") ??
  (self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1));
ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href;
ort.env.wasm.numThreads = threads;

const state = { manifest: null, sessions: new Map(), examples: {}, input: null };

function spec(name) { return mm.modalitySpec(state.manifest, name); }

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "status error" : "status";
}

async function session(graph) {
  if (!state.sessions.has(graph)) {
    const file = `bundle/${state.manifest.graphs[graph].file}`;
    state.sessions.set(graph, ort.InferenceSession.create(file, {
      executionProviders: ["wasm"], graphOptimizationLevel: "all",
      externalData: mm.externalData(state.manifest, "bundle") }));
  }
  return state.sessions.get(graph);
}

function smallCanvas(w, h) {
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  return canvas;
}

// ------------------------------------------------------------------ source input
function showInput(rgba) {
  const [h, w] = spec($("source").value).shape;
  const small = smallCanvas(w, h);
  small.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(rgba), w, h), 0, 0);
  const ctx = $("draw").getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, $("draw").width, $("draw").height);
}

/** Set the source from 8-bit RGBA pixels of the source modality's size. */
function setInputPixels(rgba) {
  const src = spec($("source").value);
  state.input = mm.pixelsToInput(src, rgba);
  showInput(rgba);
}

/** Resample any drawable (canvas, bitmap) to the source modality's size and use it. */
function setInputFrom(drawable, redraw = true) {
  const [h, w] = spec($("source").value).shape;
  const small = smallCanvas(w, h);
  const ctx = small.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(drawable, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  if (redraw) setInputPixels(rgba);
  else state.input = mm.pixelsToInput(spec($("source").value), rgba);
}

async function loadImage(blob) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none",
    premultiplyAlpha: "none" });
  setInputFrom(bitmap);
  bitmap.close();
}

function clearDrawing() {
  const ctx = $("draw").getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, $("draw").width, $("draw").height);
}

function setupDrawing() {
  const canvas = $("draw");
  let last = null;
  const point = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  canvas.addEventListener("pointerdown", (e) => { last = point(e); canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointermove", (e) => {
    if (!last) return;
    const ctx = canvas.getContext("2d");
    const p = point(e);
    ctx.strokeStyle = "#fff";
    ctx.lineCap = "round";
    ctx.lineWidth = 2.4 * DRAW_SCALE;
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...p);
    ctx.stroke();
    last = p;
  });
  canvas.addEventListener("pointerup", () => { last = null; setInputFrom(canvas, false); run(); });
}

function exampleRgba(entry, i) {
  const [h, w, c] = entry.shape;
  const rgba = new Uint8ClampedArray(h * w * 4);
  for (let p = 0; p < h * w; p++) {
    for (let k = 0; k < 3; k++) rgba[4 * p + k] = entry.pixels[i * h * w * c + p * c + (c === 1 ? 0 : k)];
    rgba[4 * p + 3] = 255;
  }
  return rgba;
}

function showExamples() {
  const box = $("examples");
  box.replaceChildren();
  const entry = state.examples[$("source").value];
  if (!entry) return;
  const [h, w] = entry.shape;
  entry.labels.forEach((label, i) => {
    const thumb = smallCanvas(w, h);
    thumb.title = `test example ${i} (label ${label})`;
    thumb.getContext("2d").putImageData(new ImageData(exampleRgba(entry, i), w, h), 0, 0);
    thumb.addEventListener("click", () => { setInputPixels(exampleRgba(entry, i)); run(); });
    box.append(thumb);
  });
}

function selectSource() {
  const [h, w] = spec($("source").value).shape;
  $("draw").width = w * DRAW_SCALE;
  $("draw").height = h * DRAW_SCALE;
  clearDrawing();
  setInputFrom($("draw"), false);
  const targets = Object.values(state.manifest.graphs)
    .filter((g) => g.role === "translate" && g.source === $("source").value)
    .map((g) => g.target).filter((t) => spec(t).kind === "image");
  $("target").replaceChildren(...targets.map((t) => new Option(t, t)));
  showExamples();
  const entry = state.examples[$("source").value];
  if (entry) setInputPixels(exampleRgba(entry, 0));
}

// ------------------------------------------------------------------ translation
function concatNoise(dim, seeds) {
  const out = new Float32Array(dim * seeds.length);
  seeds.forEach((s, i) => out.set(mm.noiseArray(state.manifest, dim, s), i * dim));
  return out;
}

/** The noise of the page's controls: n samples varying style, content or both. */
function controlNoise(n) {
  const seed = Number($("seed").value) || 0, vary = $("vary").value;
  const latent = state.manifest.latent;
  const ids = Array.from({ length: n }, (_, i) => i);
  return {
    noise: $("use_mean").checked ? new Float32Array(n * latent.latent_dim)
      : concatNoise(latent.latent_dim, ids.map((i) => 2 * (seed + (vary === "style" ? 0 : i)))),
    styleNoise: concatNoise(latent.style_dim,
      ids.map((i) => 2 * (seed + (vary === "content" ? 0 : i)) + 1)),
  };
}

function drawOutput(y, n, dst) {
  const [h, w] = dst.shape;
  const canvas = $("output");
  canvas.width = n * (w + PAD) + PAD;
  canvas.height = h + 2 * PAD;
  canvas.style.width = `${canvas.width * OUTPUT_SCALE}px`;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let i = 0; i < n; i++) {
    const tile = mm.outputToPixels(dst, y, i * mm.exampleSize(dst));
    ctx.putImageData(new ImageData(tile, w, h), PAD + i * (w + PAD), PAD);
  }
}

/**
 * Translate the current source into the selected target and draw the samples.
 * noise / styleNoise: explicit arrays (the test hook); otherwise from the page's controls.
 */
async function translate({ noise, styleNoise } = {}) {
  const src = spec($("source").value), dst = spec($("target").value);
  const graph = mm.translateGraph(state.manifest, src.name, dst.name);
  const latent = state.manifest.latent;
  const n = noise ? noise.length / latent.latent_dim : Math.max(1, Number($("samples").value) || 1);
  const controls = noise ? { noise, styleNoise } : controlNoise(n);
  const size = mm.exampleSize(src);
  const x = new Float32Array(n * size);
  for (let i = 0; i < n; i++) x.set(state.input, i * size);
  const arrays = mm.translateArrays(state.manifest, graph, x, n, {
    ...controls, styleScale: Number($("style_scale").value) });
  const sess = await session(graph);
  const t0 = performance.now();
  const out = await sess.run(mm.toTensors(ort, state.manifest, graph, arrays, n));
  const runMs = performance.now() - t0;
  drawOutput(out.x_out.data, n, dst);
  status(`${n} sample${n > 1 ? "s" : ""} of ${src.name} -> ${dst.name} in ${runMs.toFixed(1)} ms`);
  return { y: out.x_out.data, n, runMs };
}

async function run() {
  try {
    await translate();
  } catch (error) {
    status(`error: ${error.message}`, true);
  }
}

// ------------------------------------------------------------------ start-up
async function fetchJson(url, optional = false) {
  const response = await fetch(url);
  if (!response.ok) {
    if (optional && response.status === 404) return {};
    throw new Error(`${url}: HTTP ${response.status}`);
  }
  return response.json();
}

function decodeExamples(raw) {
  const out = {};
  for (const [name, entry] of Object.entries(raw)) {
    const bytes = Uint8Array.from(atob(entry.pixels), (c) => c.charCodeAt(0));
    out[name] = { ...entry, pixels: bytes };
  }
  return out;
}

async function start() {
  state.manifest = await fetchJson("bundle/manifest.json");
  state.examples = decodeExamples(await fetchJson("examples.json", true));
  const m = state.manifest;
  const sources = [...new Set(Object.values(m.graphs).filter((g) => g.role === "translate")
    .map((g) => g.source))].filter((s) => spec(s).kind === "image");
  if (!sources.length) throw new Error("the bundle has no translate graph from an image modality");
  const trained = [m.dataset && `dataset ${m.dataset}`,
    m.checkpoint_step != null && `checkpoint step ${m.checkpoint_step}`].filter(Boolean);
  $("model").textContent = [`${m.model.name} bundle`, ...trained, `modalities ` +
    m.modalities.map((s) => `${s.name} [${s.shape.join("x")}]`).join(", ")].join(", ");
  $("source").replaceChildren(...sources.map((s) => new Option(s, s)));
  $("source").addEventListener("change", () => { selectSource(); run(); });
  for (const id of ["target", "samples", "seed", "vary", "use_mean", "style_scale"]) {
    $(id).addEventListener("change", run);
  }
  $("style_scale").addEventListener("input", () => {
    $("style_scale_value").textContent = Number($("style_scale").value).toFixed(1);
  });
  $("clear").addEventListener("click", () => { clearDrawing(); setInputFrom($("draw"), false); run(); });
  $("file").addEventListener("change", async () => {
    if ($("file").files.length) { await loadImage($("file").files[0]); run(); }
  });
  setupDrawing();
  selectSource();
  await run();
  $("runtime").textContent = `onnxruntime-web ${ort.env.versions?.web ?? ""} (wasm), ` +
    `${ort.env.wasm.numThreads} thread(s), cross-origin isolated: ${self.crossOriginIsolated}`;
  return { loadMs: performance.now(), threads: ort.env.wasm.numThreads,
    crossOriginIsolated: self.crossOriginIsolated };
}

const ready = start().catch((error) => {
  status(`error: ${error.message}`, true);
  throw error;
});

// Test hook: drive the page with fixed inputs and noise (tests/test_web_demo.py).
window.mmali = {
  ready,
  latent() { return state.manifest.latent; },
  select(src, dst) { $("source").value = src; selectSource(); $("target").value = dst; },
  async loadImage(url) { await loadImage(await (await fetch(url)).blob()); },
  async translate(noise, styleNoise) {
    const out = await translate({ noise: Float32Array.from(noise),
      styleNoise: Float32Array.from(styleNoise) });
    return { y: Array.from(out.y), n: out.n, runMs: out.runMs };
  },
  readOutput() {
    const c = $("output");
    return { width: c.width, height: c.height,
      rgba: Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data) };
  },
};
