"""Reference anchor (run in a torch virtualenv, never imported by the project): one training
step of the authors' mmJSD (thomassutter/mmjsd) on its MNIST and SVHN networks (with `--text`
also its text networks), batch 256, random data of the right shapes, on CPU; prints
`reference mmJSD ...: <ms> ms/step`.

    python bench/ref_mmjsd_step.py SRC [steps] [--text]

SRC is an unpacked snapshot of thomassutter/mmjsd (the code is imported from there, never
copied). Modules the step never uses (plotting, torchvision, scikit-learn) are stubbed.

Their model class is trimodal (MNIST, SVHN, text). Without `--text` the text modality is dropped
the way their `forward` allows: `input_text=None`, and `alpha_modalities = [1/3, 1/3, 1/3, 0]`
(uniform prior, MNIST and SVHN weights, text weight 0), so the JS divergence and the mixture
run over the prior and the two image experts only; the text encoder and decoder are built
(their class always builds them) but never run and get no gradient. With `--text` the whole
MNIST-SVHN-Text step: one-hot text (B, 8, 71), `alpha_modalities = [1/4] * 4` (job_mst.sh) and
the text reconstruction `rec_w3 * -log_prob_text`. The loss is the one of their training loop
with `--method=jsd` and no factorized representation: weighted reconstructions
(rec_w1 * MNIST + rec_w2 * SVHN [+ rec_w3 * text]) + beta * beta_content * JS divergence; plus
their dynamic-prior KL, which their loop computes for logging only (kept: it is part of their
iteration's cost). latent (class_dim) 20 as in our configs/mnist_svhn_mmjsd.cfg; their default
flags otherwise.
"""
import importlib.machinery
import json
import os
import sys
import types

SRC = sys.argv[1]
sys.path.insert(0, SRC)
import torch  # noqa: E402

from ref_timing import ms_per_step  # noqa: E402  (next to this file)

for name in ["torchvision", "torchvision.utils", "torchvision.transforms", "matplotlib",
             "matplotlib.pyplot", "mpl_toolkits", "mpl_toolkits.axes_grid1", "sklearn",
             "sklearn.metrics", "sklearn.utils", "sklearn.utils.multiclass"]:
    sys.modules[name] = types.ModuleType(name)
    sys.modules[name].__spec__ = importlib.machinery.ModuleSpec(name, None)  # torch looks
sys.modules["torchvision.utils"].save_image = sys.modules["torchvision.utils"].make_grid = None
transforms = sys.modules["torchvision.transforms"]
transforms.Compose = transforms.ToTensor = None
sys.modules["torchvision"].transforms = transforms
sys.modules["mpl_toolkits.axes_grid1"].ImageGrid = None
sys.modules["sklearn.metrics"].confusion_matrix = None
sys.modules["sklearn.metrics"].roc_curve = sys.modules["sklearn.metrics"].auc = None
sys.modules["sklearn.utils.multiclass"].unique_labels = None

from divergence_measures.kl_div import calc_kl_divergence  # noqa: E402
from flags.flags_svhnmnist import parser  # noqa: E402
from networks.VAEtrimodalSVHNMNIST import VAEtrimodalSVHNMNIST  # noqa: E402
from utils.loss import log_prob_img, log_prob_text  # noqa: E402

B = 256
TEXT = "--text" in sys.argv[2:]
ARGS = [a for a in sys.argv[2:] if a != "--text"]
flags = parser.parse_args(["--method=jsd", "--class_dim=20", f"--batch_size={B}"])
flags.modality_jsd = True
flags.alpha_modalities = [0.25] * 4 if TEXT else [1 / 3, 1 / 3, 1 / 3, 0.0]
flags.device = torch.device("cpu")
with open(os.path.join(SRC, "alphabet.json"), encoding="utf-8") as f:
    flags.num_features = len("".join(json.load(f)))
model = VAEtrimodalSVHNMNIST(flags)
opt = torch.optim.Adam(list(model.parameters()), lr=flags.initial_learning_rate,
                       betas=(flags.beta_1, flags.beta_2))


def text_batch() -> torch.Tensor | None:
    """(B, len_sequence, num_features) random one-hot characters, or None without `--text`."""
    if not TEXT:
        return None
    codes = torch.randint(0, flags.num_features, (B, flags.len_sequence))
    return torch.nn.functional.one_hot(codes, flags.num_features).float()


def step() -> None:
    m1, m2, m3 = torch.rand(B, 1, 28, 28), torch.rand(B, 3, 32, 32), text_batch()
    out = model(input_mnist=m1, input_svhn=m2, input_text=m3)
    dyn_mu, dyn_logvar = out["dyn_prior"]
    calc_kl_divergence(dyn_mu, dyn_logvar, norm_value=B)  # logged only in their loop
    rec = (model.rec_w1 * -log_prob_img(out["rec"]["img_mnist"], m1, B)
           + model.rec_w2 * -log_prob_img(out["rec"]["img_svhn"], m2, B))
    if TEXT:
        rec = rec + model.rec_w3 * -log_prob_text(out["rec"]["text"], m3, B)
    loss = rec + flags.beta * flags.beta_content * out["joint_divergence"]
    opt.zero_grad()
    loss.backward()
    opt.step()


model.train()
step()
text_nets = (model.encoder_text, model.decoder_text)
text_ran = [q.grad is not None for net in text_nets for q in net.parameters()]
assert all(text_ran) if TEXT else not any(text_ran), "text ran" if not TEXT else "text idle"
n = int(ARGS[0]) if ARGS else 5
setup = "MNIST+SVHN+text" if TEXT else "MNIST+SVHN, text dropped"
print(f"reference mmJSD ({setup}) B={B}: "
      f"{ms_per_step(step, n):.1f} ms/step, torch threads {torch.get_num_threads()}")
