#!/usr/bin/env node
// Translate between modalities with an mmali_tf bundle in Node.js (onnxruntime-node, no Python).
//
//   node translate.js --bundle=DIR --from=hand --to=print --input=x.npy|digit.png \
//       --output=y.npy|y.png [--seed=0] [--use_mean] [--noise=n.npy --style_noise=s.npy]
//       [--threads=1]
//
// .npy input: one example or a batch (float32/float64 in the modality's range, or uint8 0..255).
// PNG input: an 8-bit image of the modality's height and width (grey or RGB). The posterior and
// style noise are drawn from --seed (a JavaScript generator, not numpy's) unless given as .npy
// files, which reproduces Python onnxruntime's result exactly. Errors print one line, exit 2.
import fs from "node:fs";
import path from "node:path";
import ort from "onnxruntime-node";
import * as mm from "../../mmali_tf/web/mmali_bundle.mjs";
import { readNpy, readPng, writeNpy, writePng } from "./files.js";

const USAGE = "usage: node translate.js --bundle=DIR --from=SRC --to=DST --input=FILE " +
  "--output=FILE [--seed=N] [--use_mean] [--noise=FILE --style_noise=FILE] [--threads=N]";
const FLAGS = ["bundle", "from", "to", "input", "output", "seed", "use_mean", "noise",
  "style_noise", "threads"];

function parseArgs(argv) {
  const args = {};
  for (const arg of argv) {
    const m = /^--([a-z_]+)(?:=(.*))?$/.exec(arg);
    if (!m || !FLAGS.includes(m[1])) throw new Error(`unknown argument '${arg}'; ${USAGE}`);
    args[m[1]] = m[2] ?? "true";
  }
  const missing = ["bundle", "from", "to", "input", "output"].filter((k) => !args[k]);
  if (missing.length) throw new Error(`missing ${missing.map((k) => `--${k}`).join(" ")}; ${USAGE}`);
  for (const key of ["seed", "threads"]) {
    if (args[key] !== undefined && !/^\d+$/.test(args[key])) {
      throw new Error(`--${key}=${args[key]}: expected a non-negative integer`);
    }
  }
  return args;
}

/** The source batch as {x: Float32Array, n} in the modality's value range. */
function readInput(file, spec) {
  const size = mm.exampleSize(spec);
  if (file.toLowerCase().endsWith(".png")) {
    const { rgba, width, height } = readPng(file);
    if (height !== spec.shape[0] || width !== spec.shape[1]) {
      throw new Error(`--input=${file}: image is ${width}x${height}; '${spec.name}' needs ` +
        `${spec.shape[1]}x${spec.shape[0]} (resize it first)`);
    }
    return { x: mm.pixelsToInput(spec, rgba), n: 1 };
  }
  if (!file.toLowerCase().endsWith(".npy")) throw new Error(`--input=${file}: expected .npy or .png`);
  const { data, shape, dtype } = readNpy(file);
  const [lo, hi] = spec.value_range;
  const x = dtype === "|u1" ? Float32Array.from(data, (v) => lo + (v / 255) * (hi - lo))
    : Float32Array.from(data);
  const n = shape.join() === spec.shape.join() ? 1 : shape[0];
  if (x.length !== n * size || x.length === 0) {
    throw new Error(`--input=${file}: shape (${shape.join(", ")}) is not (batch, ` +
      `${spec.shape.join(", ")})`);
  }
  mm.checkRange(spec, x);
  return { x, n };
}

function readNoise(file, expected, what) {
  if (!file) return undefined;
  const { data } = readNpy(file);
  if (data.length !== expected) {
    throw new Error(`--${what}=${file}: ${data.length} values; expected ${expected}`);
  }
  return Float32Array.from(data);
}

function writeOutput(file, y, n, spec) {
  if (file.toLowerCase().endsWith(".npy")) return writeNpy(file, y, [n, ...spec.shape]);
  if (!file.toLowerCase().endsWith(".png")) throw new Error(`--output=${file}: expected .npy or .png`);
  const [h, w] = spec.shape, pad = 2, width = n * (w + pad) + pad, height = h + 2 * pad;
  const sheet = new Uint8Array(width * height * 4).fill(255);
  for (let i = 0; i < n; i++) {
    const tile = mm.outputToPixels(spec, y, i * mm.exampleSize(spec));
    for (let r = 0; r < h; r++) {
      sheet.set(tile.subarray(r * w * 4, (r + 1) * w * 4), ((r + pad) * width + pad + i * (w + pad)) * 4);
    }
  }
  writePng(file, sheet, width, height);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const manifestFile = path.join(args.bundle, "manifest.json");
  if (!fs.existsSync(manifestFile)) throw new Error(`--bundle=${args.bundle}: no manifest.json`);
  const manifest = JSON.parse(fs.readFileSync(manifestFile, "utf8"));
  const graph = mm.translateGraph(manifest, args.from, args.to);
  const src = mm.modalitySpec(manifest, args.from), dst = mm.modalitySpec(manifest, args.to);
  if (!fs.existsSync(args.input)) throw new Error(`--input=${args.input}: no such file`);
  const { x, n } = readInput(args.input, src);
  const arrays = mm.translateArrays(manifest, graph, x, n, {
    seed: Number(args.seed ?? 0),
    useMean: args.use_mean === "true",
    noise: readNoise(args.noise, n * manifest.latent.latent_dim, "noise"),
    styleNoise: readNoise(args.style_noise, n * manifest.latent.style_dim, "style_noise"),
  });
  const session = await ort.InferenceSession.create(
    path.join(args.bundle, manifest.graphs[graph].file),
    { intraOpNumThreads: Number(args.threads ?? 1), interOpNumThreads: 1,
      executionProviders: ["cpu"], graphOptimizationLevel: "all" });
  const out = await session.run(mm.toTensors(ort, manifest, graph, arrays, n));
  writeOutput(args.output, out.x_out.data, n, dst);
  console.log(`translated ${n} x ${args.from} -> ${args.to}: ${args.output}`);
}

main().catch((error) => {
  console.error(`error: ${error.message.split("\n")[0]}`);
  process.exit(2);
});
