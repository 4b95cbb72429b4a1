"""CUDA-graph capture of the D step and G step (config ``cuda_graphs``).

A training step of a small GAN (DCGAN 32x32, batch 64) launches hundreds of small kernels; on a
fast GPU the host's launch overhead, not the kernels, sets the pace. With ``cuda_graphs`` the
trainer records each step once in a :class:`torch.cuda.CUDAGraph` and replays it, following
PyTorch's whole-network capture recipe (``torch.cuda.graph``): warm-up steps on a side stream,
then capture with ``capturable`` optimizers, static input buffers and static outputs.

What one graph holds
    - D step: the fake batch (latents drawn in the graph, G's forward under no_grad), instance
      noise on both batches, D's forward, the penalty (input gradient with ``create_graph``,
      random interpolates for gp/gp1, the fused norm op), the loss, the backward (the double
      backward included), the non-finite guard's values, the optimizer step and WGAN's weight
      clipping. Lazy regularization gets two D graphs, one with the penalty and one without.
    - G step: latents, G's forward, noise, D's forward, the loss, backward, optimizer step and
      the generator EMA update.

What stays on the host, between replays
    - the real batch, copied into a static buffer;
    - the schedules: sigma_t, the penalty weight (lazy factor x gamma_t or gamma_t / 2) and the EMA's
      1 - decay_t (ramped in, ``ema_warmup``) are computed on the host and written into 0-d device
      tensors with ``fill_`` (no sync);
    - the step counters and WGAN's critic-burst schedule (a D graph is replayed as often as the
      iteration needs);
    - the non-finite guard (``on_nonfinite=stop``): each replay's watched values are copied
      (on the device) and handed to the guard, which reads them every ``nonfinite_check_every``
      steps as in eager CUDA runs. Logged values are copies of the graphs' static outputs.

The random draws (latents, noise, interpolation weights) use the CUDA generator's graph-safe
Philox state, so a replay draws fresh numbers, the ones an eager step would draw in that order.
The first :data:`WARMUP_STEPS` calls of each step kind run eagerly on a side stream (real
training steps, the same code); the capture follows.

Falls back to eager steps, with one warning naming the reason (:func:`fallback_reason`), on a
CPU, under torchrun, with ``amp=fp16`` (GradScaler decides on the host), with
``on_nonfinite=skip`` (decides on the host before each update), and for the steps this module
does not capture: the Tempered lens and VRAL's meta-discriminators. Combining it with
``compile`` is a config error.
"""

from __future__ import annotations

import torch

WARMUP_STEPS = 3  # eager calls of each step kind before its capture (PyTorch's recipe warms up on a side stream)


def fallback_reason(config, device: torch.device, world) -> str | None:
    """Why this run cannot capture its steps, or None when it can."""
    if device.type != "cuda":
        return f"the device is {device.type}; CUDA graphs need a CUDA device"
    if world.distributed:
        return (f"under torchrun (world size {world.size}) the gradients are all-reduced between backward and "
                f"optimizer step, which is not captured")
    if config.amp == "fp16":
        return "amp=fp16's GradScaler checks the gradients and skips steps on the host"
    if config.on_nonfinite == "skip":
        return "on_nonfinite=skip decides on the host, before each update, whether to apply it"
    if config.lens:
        return "the Tempered lens step is not captured"
    if config.variant == "vral":
        return "VRAL's meta-discriminator updates inside the D step are not captured"
    return None


def set_capturable(optimizer: torch.optim.Optimizer, capturable: bool) -> None:
    """Set Adam's or RMSprop's ``capturable`` flag and move its step counters to match: onto the
    parameters' device (capturable, as a CUDA graph needs) or to the CPU (as the eager step
    expects). Loading an optimizer's state restores the saved flag; this puts the run's back."""
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = capturable
    for param, state in optimizer.state.items():
        step = state.get("step")
        if isinstance(step, torch.Tensor):
            state["step"] = step.to(param.device if capturable else "cpu")


class _Captured:
    """One captured step: its graph, static outputs, the guard's (names, values) and the gradients it writes."""

    def __init__(self, graph: torch.cuda.CUDAGraph, outputs: dict, checks: list, grads: list):
        self.graph, self.outputs, self.checks, self.grads = graph, outputs, checks, grads


class CudaGraphSteps:
    """A wrapper of a run's eager steps (:class:`fastreg.train.steps.Steps`): their bodies captured on first use
    (after warm-up) and replayed.

    The trainer passes :meth:`d_step` and :meth:`g_step` to ``Steps.d_step`` / ``Steps.g_step`` as their
    ``replay``; they get the host values (real batch, sigma_t, penalty weight, 1 - EMA decay) as arguments.
    ``steps.d_update`` and ``steps.g_update`` are the step bodies, the same code as the eager steps; here
    they receive the static real batch and the schedule tensors instead of fresh tensors and numbers, the
    list that collects the guard's values while a graph records (``checks``), and ``graphed=True``.
    Nothing is written into ``steps``.
    """

    def __init__(self, steps):
        self.steps = t = steps
        self.side_stream = torch.cuda.Stream(t.device)
        self.real = None  # static real batch, allocated at the first D step
        self.sigma = torch.zeros((), device=t.device, dtype=t.dtype)   # instance-noise sigma_t
        self.weight = torch.zeros((), device=t.device, dtype=t.dtype)  # penalty weight of this D step
        self.ema_weight = torch.zeros((), device=t.device, dtype=t.dtype)  # 1 - EMA decay of this G step
        self.calls: dict = {}
        self.captured: dict = {}
        self.last_grads: dict = {}  # "D"/"G" -> gradients the last replayed graph wrote (for grad-norm logging)

    def d_step(self, x_real: torch.Tensor, sigma: float, due: bool, weight: float) -> dict:
        """One D update on ``x_real`` with sigma_t and the penalty weight (0 when not ``due``)."""
        if self.real is None:
            self.real = torch.empty_like(x_real)
        self.real.copy_(x_real)
        self.sigma.fill_(sigma)
        self.weight.fill_(weight)
        noise = self.sigma if self.steps.config.noise > 0 else 0.0
        return self._run(("D", due), lambda checks: self.steps.d_update(due, self.weight, (self.real, noise),
                                                                         checks=checks, graphed=True))

    def g_step(self, sigma: float, ema_weight: float) -> dict:
        """One G update (and the EMA update) with sigma_t and the EMA's 1 - decay_t."""
        self.sigma.fill_(sigma)
        self.ema_weight.fill_(ema_weight)
        noise = self.sigma if self.steps.config.noise > 0 else 0.0
        return self._run(("G",), lambda checks: self.steps.g_update(noise, self.ema_weight, checks=checks,
                                                                     graphed=True))

    def _run(self, key: tuple, body) -> dict:
        """Warm up (eager, side stream), capture once, then replay the graph of ``key``; ``body(checks)`` runs the
        step's body, ``checks`` None (warm-up) or the list the capture collects the guard's values in."""
        calls = self.calls[key] = self.calls.get(key, 0) + 1
        name = key[0]
        if calls <= WARMUP_STEPS:
            self.last_grads.pop(name, None)
            with torch.cuda.device(self.steps.device):
                return self._warm_up(body)
        if key not in self.captured:
            with torch.cuda.device(self.steps.device):  # graphs may only use the current device's generator
                self.captured[key] = self._capture(body, name)
        captured = self.captured[key]
        captured.graph.replay()
        return self._results(captured, name)

    def _results(self, captured: _Captured, name: str) -> dict:
        """After a replay: the guard gets copies of the update's watched values (no sync; the stop policy reads
        them at its next flush), the logs get copies of the static outputs."""
        t = self.steps
        for names, values in captured.checks:
            t.guard.check(t.step, names, values.clone())
        self.last_grads[name] = captured.grads
        return {k: v.clone() for k, v in captured.outputs.items()}

    def _warm_up(self, body) -> dict:
        stream = self.side_stream
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            out = body(None)
        torch.cuda.current_stream().wait_stream(stream)
        return out

    def _capture(self, body, name: str) -> _Captured:
        """Record ``body`` (which does not run), on the warm-up's stream (whose library handles and workspaces
        the warm-up created). The optimizer's zero_grad inside it sets the gradients to None, so the captured
        backward allocates them in the graph's private memory pool, where the replays write them."""
        t = self.steps
        graph = torch.cuda.CUDAGraph()
        checks = []
        with torch.cuda.graph(graph, stream=self.side_stream):
            outputs = body(checks)
        module = t.D if name == "D" else t.G
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        return _Captured(graph, outputs, checks, grads)
