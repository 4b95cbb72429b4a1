"""The trainer's regularized D step reuses one forward for loss and penalty; it must equal the plain path."""

import torch
import torch.nn.functional as F

from fastreg import losses, models, regularizers


def d_gradients(loss_fn, D, x_real, x_fake):
    D.zero_grad(set_to_none=True)
    loss_fn(D, x_real, x_fake).backward()
    return [p.grad.clone() for p in D.parameters()]


def reused_forward_loss(D, x_real, x_fake, gamma=2.0):
    omega, v_real, v_fake = regularizers.roth_penalty(D, x_real, x_fake, "ns")
    return losses.d_loss("ns", v_real, v_fake) + gamma / 2 * omega


def plain_two_forward_loss(D, x_real, x_fake, gamma=2.0):
    """Loss forward, then a separate forward for the penalty, weights and norms written out."""
    loss = F.softplus(-D(x_real)).mean() + F.softplus(D(x_fake)).mean()
    xr, xf = x_real.clone().requires_grad_(), x_fake.clone().requires_grad_()
    vr, vf = D(xr), D(xf)
    gr, gf = torch.autograd.grad((vr.sum(), vf.sum()), (xr, xf), create_graph=True)
    omega = (((1 - torch.sigmoid(vr)) ** 2 * gr.pow(2).flatten(1).sum(1)).mean()
             + (torch.sigmoid(vf) ** 2 * gf.pow(2).flatten(1).sum(1)).mean())
    return loss + gamma / 2 * omega


def test_reused_forward_gives_the_plain_path_gradients():
    torch.manual_seed(0)
    D = models.DCGANDiscriminator(width=8, resolution=16, channels=3).double()
    x_real, x_fake = torch.randn(6, 3, 16, 16, dtype=torch.float64), torch.randn(6, 3, 16, 16, dtype=torch.float64)
    fused = d_gradients(reused_forward_loss, D, x_real, x_fake)
    plain = d_gradients(plain_two_forward_loss, D, x_real, x_fake)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert max(g.abs().max().item() for g in fused) > 1e-3  # the check is not vacuous
