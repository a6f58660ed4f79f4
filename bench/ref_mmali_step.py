"""Performance anchor: time one training iteration (D step + G step, batch 64) of the authors'
PyTorch mmALI on MNIST-SVHN networks, on CPU, with random data of the right shapes.
REF_DIR is an unpacked snapshot of the public repository 6b5d/mmali (never copied into this
project); needs torch (CPU), numpy, scipy, scikit-image in their own virtual environment.
Usage: python bench/ref_mmali_step.py REF_DIR [iters] [threads]
Run by bench/reference_step.py, alternating with our step; its records hold the measurements."""
import sys, copy
ref, iters = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30
sys.path.insert(0, ref)
import torch, torch.nn as nn
from ref_timing import ms_per_step  # next to this file
if len(sys.argv) > 3: torch.set_num_threads(int(sys.argv[3]))
import models, models.mnist, models.svhn, models.mnist_svhn, models.mmali.factor2, utils
B, L, S = 64, 20, 10
C = L - S
x1d = nn.ModuleList([models.mnist.XZDiscriminator(img_shape=(1,28,28), latent_dim=L, spectral_norm=True, output_dim=3),
                     models.mnist.XZDiscriminator(img_shape=(1,28,28), latent_dim=L, spectral_norm=True)])
x2d = nn.ModuleList([models.svhn.XZDiscriminator(channels=3, latent_dim=L, spectral_norm=True, output_dim=3),
                     models.svhn.XZDiscriminator(channels=3, latent_dim=L, spectral_norm=True)])
jd = models.mnist_svhn.XXDiscriminatorDot(img_shape=(1,28,28), channels=3)
km, ks = '0mnist', '1svhn'
model = models.mmali.factor2.FactorModel(
    encoders={km: models.GaussianConditional(models.mnist.Encoder(img_shape=(1,28,28), latent_dim=2*L)),
              ks: models.GaussianConditional(models.svhn.Encoder(channels=3, latent_dim=2*L))},
    decoders={km: models.mnist.Decoder(img_shape=(1,28,28), latent_dim=L),
              ks: models.svhn.Decoder(channels=3, latent_dim=L)},
    xz_discriminators={km: x1d, ks: x2d}, joint_discriminator=jd, content_dim=C,
    lambda_unimodal=0.1, lambda_x_rec=0.05, lambda_c_rec=0.05, lambda_s_rec=0.05, joint_rec=True)
utils.init_param_normal(model)
ema = copy.deepcopy(model)
oG = torch.optim.Adam(model.generators.parameters(), lr=2e-4, betas=(0.5, 0.999))
oD = torch.optim.Adam(model.discriminators.parameters(), lr=2e-4, betas=(0.5, 0.999))
def batch():
    return torch.rand(B,1,28,28), torch.rand(B,3,32,32)
def it():
    x1,x2 = batch()
    d = model({km:{'x':x1,'z':torch.randn(B,L)}, ks:{'x':x2,'z':torch.randn(B,L)}}, train_d=True, joint=False)
    x1,x2 = batch(); s1,s2,c = torch.randn(B,S),torch.randn(B,S),torch.randn(B,C)
    d.update(model({km:{'x':x1,'z':torch.cat([s1,c],1),'extra_x':utils.permute_dim(x1)}, ks:{'x':x2,'z':torch.cat([s2,c],1),'extra_x':utils.permute_dim(x2)}}, train_d=True, joint=True))
    l = sum(d.values()); oD.zero_grad(); l.backward(); oD.step()
    x1,x2 = batch()
    g = model({km:{'x':x1,'z':torch.randn(B,L)}, ks:{'x':x2,'z':torch.randn(B,L)}}, train_d=False, joint=False)
    x1,x2 = batch(); s1,s2,c = torch.randn(B,S),torch.randn(B,S),torch.randn(B,C)
    g.update(model({km:{'x':x1,'z':torch.cat([s1,c],1)}, ks:{'x':x2,'z':torch.cat([s2,c],1)}}, train_d=False, joint=True))
    l = sum(g.values()); oG.zero_grad(); l.backward(); oG.step()
    ema.lerp(model, 0.9999)
model.train()
for _ in range(5): it()
dt = ms_per_step(it, iters) / 1e3
print(f"reference torch {torch.__version__} threads={torch.get_num_threads()} iter_ms={dt*1e3:.1f} it_per_s={1/dt:.2f}")
