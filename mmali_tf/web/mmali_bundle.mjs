// Manifest-driven helpers for running an mmali_tf bundle from JavaScript (browser or Node).
//
// Shared by the static web page (mmali_tf/web, built by `mmali-web`) and the Node
// example (examples/node/translate.js). No dependencies: the caller passes its onnxruntime
// module (onnxruntime-web or onnxruntime-node) where tensors are built. Everything about a
// modality (shape, value range, kind) and the noise comes from the bundle's manifest.json.

/** The manifest entry of modality `name`; throws naming the bundle's modalities. */
export function modalitySpec(manifest, name) {
  const spec = manifest.modalities.find((m) => m.name === name);
  if (!spec) {
    const names = manifest.modalities.map((m) => m.name).join(", ");
    throw new Error(`unknown modality '${name}'; this bundle has ${names}`);
  }
  return spec;
}

/** Name of the graph translating `src` into `dst`; throws if the bundle lacks it. */
export function translateGraph(manifest, src, dst) {
  modalitySpec(manifest, src);
  modalitySpec(manifest, dst);
  const name = `translate_${src}_to_${dst}`;
  if (!manifest.graphs[name]) {
    throw new Error(`bundle has no graph '${name}'; it has ${Object.keys(manifest.graphs).join(", ")}`);
  }
  return name;
}

/** Number of values in one example of a modality. */
export function exampleSize(spec) {
  return spec.shape.reduce((a, b) => a * b, 1);
}

/** A seeded uniform generator on (0, 1) (mulberry32; not numpy's generator). */
export function uniformSource(seed) {
  let state = (seed >>> 0) ^ 0x9e3779b9;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
}

/** `count` standard draws of the manifest's noise distribution (normal or laplace). */
export function noiseArray(manifest, count, seed) {
  const uniform = uniformSource(seed);
  const out = new Float32Array(count);
  const laplace = manifest.noise.distribution === "laplace";
  for (let i = 0; i < count; i++) {
    const u = uniform();
    if (laplace) {
      const c = u - 0.5;
      out[i] = -Math.sign(c) * Math.log(1 - 2 * Math.abs(c));
    } else {
      out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
    }
  }
  return out;
}

/**
 * onnxruntime-web's `externalData` session option for a bundle whose graphs share one weights
 * file (manifest.external_data, format version 2): that file fetched from `baseUrl`.
 * Undefined for bundles whose graphs embed their weights. (onnxruntime-node finds the file
 * itself, beside the graph file it opens.)
 */
export function externalData(manifest, baseUrl) {
  const file = manifest.external_data;
  return file ? [{ path: file, data: `${baseUrl}/${file}` }] : undefined;
}

/** Input names of graph `graph` as recorded in the manifest. */
export function graphInputs(manifest, graph) {
  return manifest.graphs[graph].inputs.map((i) => i.name);
}

/**
 * The feeds of one translate call as {name: Float32Array}; `x` holds `n` source examples.
 *
 * options.noise / options.styleNoise: explicit arrays (n * latent_dim, n * style_dim);
 * otherwise drawn from options.seed (posterior) and options.styleSeed (target style).
 * options.useMean: zero posterior noise (the posterior mean). options.styleScale multiplies
 * the style noise (0: the prior's mean style).
 */
export function translateArrays(manifest, graph, x, n, options = {}) {
  const latent = manifest.latent;
  const seed = options.seed ?? 0;
  const arrays = { x };
  for (const name of graphInputs(manifest, graph)) {
    if (name === "noise") {
      arrays.noise = options.noise ?? (options.useMean
        ? new Float32Array(n * latent.latent_dim)
        : noiseArray(manifest, n * latent.latent_dim, seed));
    } else if (name === "style_noise") {
      const style = options.styleNoise ?? noiseArray(manifest, n * latent.style_dim,
        options.styleSeed ?? seed + 0x51ed);
      const scale = options.styleScale ?? 1;
      arrays.style_noise = scale === 1 ? style : style.map((v) => v * scale);
    } else if (name !== "x") {
      throw new Error(`graph '${graph}' has an input '${name}' this helper does not know`);
    }
  }
  return arrays;
}

/** Wrap {name: Float32Array} into onnxruntime tensors with the manifest's shapes. */
export function toTensors(ort, manifest, graph, arrays, n) {
  const feeds = {};
  for (const input of manifest.graphs[graph].inputs) {
    const dims = input.shape.map((d) => (d === "batch" ? n : d));
    const expected = dims.reduce((a, b) => a * b, 1);
    const data = arrays[input.name];
    if (data.length !== expected) {
      throw new Error(`input '${input.name}' has ${data.length} values; expected ${expected} ` +
        `for shape [${dims.join(", ")}]`);
    }
    feeds[input.name] = new ort.Tensor("float32", data, dims);
  }
  return feeds;
}

/** Map 8-bit pixels (RGBA, row-major, the modality's height x width) to model input. */
export function pixelsToInput(spec, rgba) {
  const [h, w, c] = spec.shape;
  if (spec.kind !== "image" || (c !== 1 && c !== 3)) {
    throw new Error(`modality '${spec.name}' is not a grey or RGB image (shape ` +
      `[${spec.shape.join(", ")}])`);
  }
  const [lo, hi] = spec.value_range;
  const out = new Float32Array(h * w * c);
  for (let p = 0; p < h * w; p++) {
    const r = rgba[4 * p], g = rgba[4 * p + 1], b = rgba[4 * p + 2];
    if (c === 1) {
      // ITU-R 601-2 luma with the fixed-point rounding Pillow's convert("L") uses
      const grey = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
      out[p] = lo + (grey / 255) * (hi - lo);
    } else {
      for (let k = 0; k < c; k++) out[p * c + k] = lo + (rgba[4 * p + k] / 255) * (hi - lo);
    }
  }
  return out;
}

/** Map one example of model output (height x width x channels) to 8-bit RGBA pixels. */
export function outputToPixels(spec, y, offset = 0) {
  const [h, w, c] = spec.shape;
  const [lo, hi] = spec.value_range;
  const rgba = new Uint8ClampedArray(h * w * 4);
  const level = (v) => Math.round(Math.min(1, Math.max(0, (v - lo) / (hi - lo))) * 255);
  for (let p = 0; p < h * w; p++) {
    for (let k = 0; k < 3; k++) rgba[4 * p + k] = level(y[offset + p * c + (c === 1 ? 0 : k)]);
    rgba[4 * p + 3] = 255;
  }
  return rgba;
}

/** Check that `x` lies in the modality's value range and is finite (one-line Error otherwise). */
export function checkRange(spec, x) {
  const [lo, hi] = spec.value_range;
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i]) || x[i] < lo || x[i] > hi) {
      throw new Error(`input for '${spec.name}' has value ${x[i]} at index ${i} outside the ` +
        `modality's range [${lo}, ${hi}]`);
    }
  }
}
