"""ONNX export: every exported graph matches the TensorFlow model (batch 1 and 17, same noise).

References are computed through the MultimodalModel interface only (`encode`, `decode`,
`fuse`, `sample_posterior`, `sample_prior`), with the model's noise source replaced by the
arrays fed to the graphs, so a graph that diverges from what the model computes fails.
"""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np
import onnx
import pytest
import tensorflow as tf

from conftest import HAND, PRINT, digits_config_value
from mmali_tf.export import manifest as manifest_lib
from mmali_tf.export import onnx_export
from mmali_tf.export.runtime import Bundle
from mmali_tf import latent as latent_lib
from mmali_tf import models, registry

TOL = dict(rtol=1e-5, atol=1e-5)
#: model -> config its shipped configs set that export's parity test must use too.
CONFIG_EXTRAS = {"mmvae_plus": {"learn_prior": False}}
#: what export uses from a model class.
INTERFACE = ("encode", "decode", "fuse", "sample_prior", "sample_noise", "sample_posterior",
             "prior_params", "params_from_encoder_output", "_nets", "posterior_family",
             "default_fusion", "prior_expert", "fusion_prior_expert", "build_networks")


def same_inference(a: type, b: type) -> bool:
    """Whether export sees the same implementation in classes a and b."""
    return all(getattr(a, x) is getattr(b, x) or getattr(a, x) == getattr(b, x)
               and not callable(getattr(b, x)) for x in INTERFACE)


def config_style_dim(name: str) -> int:
    """--style_dim of configs/digits_<name>.cfg (flag default 10 when it is not set)."""
    return int(digits_config_value(name, "style_dim") or 10)


def model_types() -> dict[str, tuple[int, dict]]:
    """name -> (style_dim, extra config): one registered model per distinct inference
    implementation (the one whose digits config has the largest style subspace, then the base
    class rather than a subclass), so every registered model's inference code is
    parity-tested through its representative."""
    reps: list[str] = []
    for name, entry in registry.entries("model").items():
        if not entry.builtin:
            continue
        cls = models.model_class(name)
        group = [i for i, rep in enumerate(reps) if same_inference(cls, models.model_class(rep))]
        if not group:
            reps.append(name)
            continue
        rep = reps[group[0]]
        key = (config_style_dim(name), issubclass(models.model_class(rep), cls))
        if key > (config_style_dim(rep), issubclass(cls, models.model_class(rep))):
            reps[group[0]] = name
    return {name: (3 if config_style_dim(name) else 0, dict(CONFIG_EXTRAS.get(name, {})))
            for name in reps}


MODEL_TYPES = model_types()


def build_model(name: str, **extra):
    style_dim, config = MODEL_TYPES[name]
    model = models.build(name, [HAND, PRINT], {"latent_dim": 8, "style_dim": style_dim,
                                               "ema_decay": 0.99, "seed": 0, **config, **extra})
    model.build_from_specs()
    # make the EMA networks differ from the raw ones, so exporting the wrong set fails parity
    rng = np.random.default_rng(1)
    nets = list(model.ema.encoders.values()) + list(model.ema.decoders.values())
    for v in [w for net in nets for w in net.weights]:
        v.assign(v.numpy() + 0.05 * rng.standard_normal(v.shape).astype(np.float32))
    return model


@contextlib.contextmanager
def fed_noise(model, arrays):
    """Make `model.sample_noise` return `arrays` in order (checking the requested shapes)."""
    queue = list(arrays)

    def fake(shape, seed=None, name=None):
        want = tuple(int(s) for s in np.asarray(shape))
        got = queue.pop(0)
        assert got.shape == want, (got.shape, want)
        return tf.constant(got)

    model.sample_noise = fake
    try:
        yield
    finally:
        del model.sample_noise
    assert not queue, "the model drew less noise than the graph consumes"


def ref_sample(model, m, x, noise):
    mean, logvar = model.encode(m, tf.constant(x))
    with fed_noise(model, [] if logvar is None else [noise]):
        return model.sample_posterior(mean, logvar)


def ref_prior(model, content_noise, style_noises):
    with fed_noise(model, [content_noise] + style_noises):
        return model.sample_prior(len(content_noise))


def reference(model, graph: dict, feeds: dict) -> dict[str, np.ndarray]:
    """What the TensorFlow model computes for one graph's feeds, by output name."""
    role, lay = graph["role"], model.layout
    n = len(next(iter(feeds.values())))
    # sample_prior draws the content noise, then one (n, style_dim) style noise per modality
    styles = [np.zeros((n, lay.style_dim), np.float32) for _ in model.modalities]
    if role == "encoder":
        mean, logvar = model.encode(graph["modality"], tf.constant(feeds["x"]))
        return {"mean": mean} if logvar is None else {"mean": mean, "logvar": logvar}
    if role == "decoder":
        return {"x": model.decode(graph["modality"], tf.constant(feeds["z"]))}
    if role == "reconstruct":
        z = ref_sample(model, graph["modality"], feeds["x"], feeds.get("noise"))
        return {"x_out": model.decode(graph["modality"], z), "z": z}
    if role == "translate":
        src, dst = graph["source"], graph["target"]
        content = lay.content(ref_sample(model, src, feeds["x"], feeds.get("noise")))
        if lay.style_dim:
            styles[model.modalities.index(dst)] = feeds["style_noise"]
        prior = ref_prior(model, np.zeros((n, lay.content_dim), np.float32), styles)
        z = lay.join(lay.style(prior[dst]), content)
        return {"x_out": model.decode(dst, z), "z": z}
    if role == "generate":
        if lay.style_dim:
            styles = [feeds[f"style_noise_{m}"] for m in model.modalities]
        prior = ref_prior(model, feeds["content_noise"], styles)
        return {f"x_{m}": model.decode(m, prior[m]) for m in model.modalities}
    assert role == "fuse"
    mask = feeds["mask"] > 0.5
    out = {"mean": np.full((n, lay.content_dim), np.nan, np.float32)}
    out["logvar"] = out["mean"].copy()
    for code in range(1, 2 ** len(model.modalities)):
        subset = [m for i, m in enumerate(model.modalities) if code >> i & 1]
        rows = (mask == [bool(code >> i & 1) for i in range(len(model.modalities))]).all(axis=1)
        mean, logvar = model.fuse({m: (tf.constant(feeds[f"mean_{m}"]),
                                       tf.constant(feeds[f"logvar_{m}"])) for m in subset},
                                  graph["method"])
        out["mean"][rows], out["logvar"][rows] = mean.numpy()[rows], logvar.numpy()[rows]
    return out


def random_feeds(model, graph: dict, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Valid random inputs for one graph (images in range, latents, noise, fusion masks)."""
    feeds = {}
    for spec in graph["inputs"]:
        name, shape = spec["name"], (n,) + tuple(spec["shape"][1:])
        if name == "x":
            feeds[name] = rng.uniform(0.0, 1.0, shape).astype(np.float32)
        elif name == "mask":
            codes = rng.integers(1, 2 ** shape[1], size=n)
            codes[: 2 ** shape[1] - 1] = np.arange(1, 2 ** shape[1])[: n]
            feeds[name] = ((codes[:, None] >> np.arange(shape[1])) & 1).astype(np.float32)
        elif name.startswith("logvar"):
            feeds[name] = rng.uniform(-2.0, 1.0, shape).astype(np.float32)
        else:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def assert_parity(model, bundle: Bundle) -> None:
    """Every graph of `bundle` against the model, at batch 17 and batch 1, same inputs."""
    rng = np.random.default_rng(0)
    for name, graph in bundle.manifest["graphs"].items():
        feeds17 = random_feeds(model, graph, 17, rng)
        for feeds in (feeds17, {k: v[:1] for k, v in feeds17.items()}):
            got = bundle.run(name, feeds)
            want = reference(model, graph, feeds)
            assert sorted(got) == sorted(want), name
            n = len(next(iter(feeds.values())))
            for key in want:
                np.testing.assert_allclose(got[key], np.asarray(want[key]), **TOL,
                                           err_msg=f"{name}:{key} at batch {n}")


@pytest.fixture(scope="module")
def mmali_bundle(tmp_path_factory):
    model = build_model("mmali")
    path = tmp_path_factory.mktemp("export") / "bundle"
    onnx_export.export_bundle(model, path, training_flags={"model": "mmali", "lr": 2e-4},
                              checkpoint_step=123, dataset="toy")
    return model, Bundle(path)


@pytest.mark.slow
def test_every_graph_of_mmali_matches_tensorflow(mmali_bundle):
    model, bundle = mmali_bundle
    names = set(bundle.manifest["graphs"])
    assert names == {"encoder_hand", "encoder_print", "decoder_hand", "decoder_print",
                     "fuse_poe", "fuse_moe_mean", "fuse_geometric", "translate_hand_to_print",
                     "translate_print_to_hand", "reconstruct_hand", "reconstruct_print",
                     "generate"}
    assert_parity(model, bundle)
    # the EMA networks were exported: the raw encoder gives something else
    x = np.random.default_rng(3).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    raw_mean, _ = model.encode("hand", tf.constant(x), ema=False)
    assert not np.allclose(bundle.encode("hand", x)[0], raw_mean.numpy(), **TOL)


def test_manifest_metadata_and_batch_axes(mmali_bundle):
    model, bundle = mmali_bundle
    man = bundle.manifest
    assert man["format_version"] == manifest_lib.FORMAT_VERSION
    assert man["model"]["name"] == "mmali" and man["model"]["posterior_family"] == "normal"
    assert man["noise"] == {"distribution": "normal", "loc": 0.0, "scale": 1.0}
    assert man["latent"] == {"style_dim": 3, "content_dim": 5, "latent_dim": 8,
                             "order": "style_then_content"}
    assert [m["name"] for m in man["modalities"]] == ["hand", "print"]
    assert man["modalities"][1]["shape"] == [32, 32, 3]
    assert man["modalities"][0]["value_range"] == [0.0, 1.0]
    assert man["checkpoint_step"] == 123 and man["dataset"] == "toy"
    assert man["training_flags"] == {"model": "mmali", "lr": 2e-4}
    assert man["weights"] == "ema" and man["opset"] == 17
    assert man["fusion_methods"] == list(latent_lib.FUSION_METHODS)
    assert {"poe", "moe_mean", "geometric"} <= set(man["fusion_methods"])
    assert set(man["files"]) == {g["file"] for g in man["graphs"].values()} | {"weights.bin"}
    assert man["external_data"] == "weights.bin"
    # each weight is stored once: the composite graphs refer to the bytes of the part graphs
    refs = {}
    for name, graph in man["graphs"].items():
        proto = onnx.load(str(bundle.path / graph["file"]), load_external_data=False)
        refs[name] = {tuple(e.value for e in t.external_data) for t in proto.graph.initializer
                      if t.data_location == onnx.TensorProto.EXTERNAL}
    parts = set().union(*(r for n, r in refs.items() if n.startswith(("encoder_", "decoder_"))))
    assert refs["translate_hand_to_print"] and refs["translate_hand_to_print"] <= parts
    assert refs["generate"] <= parts and refs["reconstruct_print"] <= parts
    ends = [int(off) + int(length) for _, off, length in parts]
    assert (bundle.path / "weights.bin").stat().st_size == max(ends)
    for name, graph in man["graphs"].items():
        proto = onnx.load(str(bundle.path / graph["file"]))
        onnx.checker.check_model(proto, full_check=True)
        assert any(o.domain in ("", "ai.onnx") and o.version == 17 for o in proto.opset_import)
        for value in list(proto.graph.input) + list(proto.graph.output):
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch", (name, value.name)
        props = {p.key: p.value for p in proto.metadata_props}
        assert json.loads(props["mmali.format_version"]) == manifest_lib.FORMAT_VERSION
        assert json.loads(props["mmali.latent"]) == man["latent"]
        assert json.loads(props["mmali.graph"]) == graph
        assert manifest_lib.sha256_file(bundle.path / graph["file"]) == man["files"][graph["file"]]
    translate = man["graphs"]["translate_hand_to_print"]
    assert [i["name"] for i in translate["inputs"]] == ["x", "noise", "style_noise"]
    assert translate["inputs"][0]["shape"] == ["batch", 28, 28, 1]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in MODEL_TYPES if n != "mmali"])
def test_core_graphs_of_every_model_type_match_tensorflow(name, tmp_path):
    """translate (encode, posterior noise, prior, decode), generate, and fuse when the model
    adds a prior expert (mmALI's full test covers the three fusions without one)."""
    model = build_model(name)
    graphs = ["translate_hand_to_print", "generate"]
    graphs += [f"fuse_{model.default_fusion}"] if model.prior_expert else []
    onnx_export.export_bundle(model, tmp_path / "b", graphs=graphs)
    bundle = Bundle(tmp_path / "b")
    assert sorted(bundle.manifest["graphs"]) == sorted(graphs)
    man = bundle.manifest
    assert man["noise"]["distribution"] == model.posterior_family
    assert man["model"]["prior_expert"] == bool(model.prior_expert)
    style_inputs = [i["name"] for i in man["graphs"]["generate"]["inputs"]][1:]
    assert style_inputs == (["style_noise_hand", "style_noise_print"]
                            if model.layout.style_dim else [])
    assert_parity(model, bundle)


def test_deterministic_mmali_has_no_noise_inputs_and_matches(tmp_path):
    model = build_model("mmali", deterministic=True)
    onnx_export.export_bundle(model, tmp_path / "b", graphs=["encoder_hand",
                                                             "translate_print_to_hand"])
    bundle = Bundle(tmp_path / "b")
    graph = bundle.manifest["graphs"]["translate_print_to_hand"]
    assert [i["name"] for i in graph["inputs"]] == ["x", "style_noise"]
    assert [o["name"] for o in bundle.manifest["graphs"]["encoder_hand"]["outputs"]] == ["mean"]
    assert bundle.manifest["fusion_methods"] == []
    assert_parity(model, bundle)
    with pytest.raises(ValueError, match="fuse_poe"):
        onnx_export.export_bundle(model, tmp_path / "c", graphs=["fuse_poe"])


def test_raw_weights_export_matches_raw_networks(mmali_bundle, tmp_path):
    model, _ = mmali_bundle
    onnx_export.export_bundle(model, tmp_path / "raw", weights="raw", graphs=["encoder_hand"])
    bundle = Bundle(tmp_path / "raw")
    x = np.random.default_rng(4).uniform(0, 1, (5, 28, 28, 1)).astype(np.float32)
    mean, logvar = model.encode("hand", tf.constant(x), ema=False)
    got_mean, got_logvar = bundle.encode("hand", x)
    np.testing.assert_allclose(got_mean, mean.numpy(), **TOL)
    np.testing.assert_allclose(got_logvar, logvar.numpy(), **TOL)
    assert bundle.manifest["weights"] == "raw"


def test_failed_export_leaves_nothing_behind(mmali_bundle, tmp_path, monkeypatch):
    model, bundle = mmali_bundle
    calls = []

    def failing(plan, opset):  # the first graph converts (a stored copy), the second fails
        calls.append(plan.name)
        if len(calls) == 2:
            raise RuntimeError("conversion failed midway")
        return onnx.load(str(bundle.path / f"{plan.name}.onnx"))

    monkeypatch.setattr(onnx_export, "_convert", failing)
    with pytest.raises(RuntimeError, match="midway"):
        onnx_export.export_bundle(model, tmp_path / "new")
    assert os.listdir(tmp_path) == []
    # an existing bundle survives a failed overwrite untouched
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("old bundle")
    calls[:] = ["pretend"]  # fail at the first graph this time
    with pytest.raises(RuntimeError, match="midway"):
        onnx_export.export_bundle(model, tmp_path / "old", overwrite=True)
    assert os.listdir(tmp_path) == ["old"]
    assert os.listdir(tmp_path / "old") == ["keep.txt"]


def test_bad_export_arguments_are_one_line_errors(mmali_bundle, tmp_path):
    model, bundle = mmali_bundle
    cases = [(dict(opset=19), "opset=19"), (dict(weights="best"), "weights='best'"),
             (dict(graphs=["translate_hand_to_svhn"]), "translate_hand_to_svhn")]
    for kwargs, text in cases:
        with pytest.raises(ValueError, match=text) as info:
            onnx_export.export_bundle(model, tmp_path / "x", **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="already exists"):
        onnx_export.export_bundle(model, bundle.path)
    no_ema = models.build("mmali", [HAND, PRINT], {"latent_dim": 8, "style_dim": 3,
                                                    "ema_decay": 0.0})
    with pytest.raises(ValueError, match="no EMA"):
        onnx_export.export_bundle(no_ema, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_model_types_cover_every_inference_implementation_once():
    """The parametrisation above: representatives differ pairwise, every registered model
    shares one's implementation, and a subclass that only changes training shares its base's."""
    reps = [models.model_class(n) for n in MODEL_TYPES]
    assert all(not same_inference(a, b) for i, a in enumerate(reps) for b in reps[i + 1:])
    for name in models.model_names():
        assert any(same_inference(models.model_class(name), r) for r in reps), name
    assert same_inference(models.model_class("ci_mvae"), models.model_class("mvae"))
    assert not same_inference(models.model_class("mmvae"), models.model_class("mvae"))
    assert MODEL_TYPES["mmali"] == (3, {})
