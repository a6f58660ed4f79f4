"""Performance anchor: one training step of the authors' MMVAE (iffsid/mmvae) on MNIST-SVHN networks,
DReG "looser" objective, K=30, batch 128, Adam(amsgrad), random data of the right shapes, on CPU.
SRC is the `src/` folder of an unpacked snapshot of iffsid/mmvae (never copied into the project).
Modules the step never uses (data loading, plotting) are stubbed so that only torch is needed.
Usage: python bench/ref_mmvae_step.py SRC [steps]
Run by bench/reference_step.py, alternating with our step; its records hold the measurements."""
import sys, argparse
sys.path.insert(0, sys.argv[1])
import torch
from ref_timing import ms_per_step  # next to this file
import types
for name in ["torchnet", "torchnet.dataset", "torchvision", "torchvision.utils", "vis", "datasets"]:
    m = types.ModuleType(name); sys.modules[name] = m
sys.modules["torchnet.dataset"].TensorDataset = sys.modules["torchnet.dataset"].ResampleDataset = object
sys.modules["torchvision.utils"].save_image = sys.modules["torchvision.utils"].make_grid = None
sys.modules["vis"].plot_embeddings = sys.modules["vis"].plot_kls_df = sys.modules["vis"].embed_umap = sys.modules["vis"].tensors_to_df = None
sys.modules["datasets"].CUBImageFt = object
sys.modules["torchvision"].datasets = sys.modules["torchvision"].transforms = None
import importlib
objectives = importlib.import_module("objectives")
pkg = types.ModuleType("models"); pkg.__path__ = [sys.argv[1] + "/models"]; sys.modules["models"] = pkg
from models.mmvae_mnist_svhn import MNIST_SVHN
B, K = 128, 30
p = argparse.Namespace(latent_dim=20, num_hidden_layers=1, learn_prior=True, llik_scaling=0.0, logp=False, K=K, looser=True, no_cuda=True, device='cpu', batch_size=B)
model = MNIST_SVHN(p)
opt = torch.optim.Adam(filter(lambda q: q.requires_grad, model.parameters()), lr=1e-3, amsgrad=True)
obj = objectives.m_dreg_looser
def step():
    data = [torch.rand(B, 1, 28, 28), torch.rand(B, 3, 32, 32)]
    opt.zero_grad(); loss = -obj(model, data, K=K); loss.backward(); opt.step()
model.train()
for _ in range(1): step()
n = int(sys.argv[2]) if len(sys.argv) > 2 else 3
print(f"reference MMVAE dreg_looser K={K} B={B}: {ms_per_step(step, n):.0f} ms/step, torch threads {torch.get_num_threads()}")
