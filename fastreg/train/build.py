"""Build a run's parts from its config: data, networks, optimizers, schedules."""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import data, models, schedules
from ..regularizers import in_force
from .config import ConfigError, TrainConfig
from ..models.mlp import truncated_normal_init_
from .distributed import World



def device_of(config: TrainConfig, world: World | None = None) -> torch.device:
    """The config's device; under torchrun each process takes ``cuda:LOCAL_RANK`` for auto/cuda. ConfigError
    naming ``device`` for a CUDA device that is not there (no usable GPU, or an index past the last)."""
    name = config.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if world is not None and world.distributed and name.startswith("cuda"):
        if name != "cuda":
            raise ConfigError(f"device: under torchrun each process uses cuda:LOCAL_RANK; pass cuda or auto, "
                              f"not {config.device!r}")
        device = torch.device("cuda", world.local_rank)
    else:
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise ConfigError(f"device: {config.device!r} is not a device ({exc})") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device: {config.device!r} asks for a CUDA GPU, but none is usable here "
                              f"(torch.cuda.is_available() is False); use --device cpu, or auto to take a GPU "
                              f"when there is one")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device: {config.device!r}, but only {count} CUDA device(s) are visible "
                              f"(cuda:0 to cuda:{count - 1})")
    return device


def dataset_of(config: TrainConfig):
    """The config's dataset; a missing dataset raises ConfigError naming data_root and where it looked."""
    if config.data in data.TOY:
        return data.get_dataset(config.data, seed=config.seed)
    try:
        return data.get_dataset(config.data, resolution=config.resolution, root=config.data_root)
    except data.DatasetNotFoundError as exc:
        raise ConfigError(f"data_root: no {config.data!r} data at {config.data_root or data.vision.default_root()}: "
                          f"{exc}") from None
    except data.DatasetDecodeError as exc:
        raise ConfigError(f"data_root: {exc}") from None


def sample_shape(dataset) -> tuple[int, ...]:
    """Shape of one real sample: (dim,) for toy data, (C, R, R) for images."""
    if hasattr(dataset, "sample"):
        return (dataset.dim,)
    first = dataset[0][0]
    return tuple(first.shape)


def networks(config: TrainConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """(G, D) for the config's model family and the data's sample shape."""
    if config.model == "mlp":
        if len(shape) != 1:
            raise ConfigError(f"model: 'mlp' is for toy data; {config.data!r} gives samples of shape {shape}")
        G, D = models.MLPGenerator(z_dim=config.z_dim, out_dim=shape[0]), models.MLPDiscriminator(in_dim=shape[0])
        if config.mlp_init == "truncated-normal":
            G, D = truncated_normal_init_(G), truncated_normal_init_(D)
        return G, D
    if len(shape) != 3:
        raise ConfigError(f"model: {config.model!r} needs image data; {config.data!r} gives samples of shape {shape}")
    channels, resolution = shape[0], shape[-1]
    if shape[1] != shape[2] or resolution not in models.RESOLUTIONS:
        raise ConfigError(f"resolution: data {config.data!r} gives {shape[1]}x{shape[2]} images; the {config.model} "
                          f"models take square images of side {', '.join(map(str, models.RESOLUTIONS))}")
    if config.model == "dcgan":
        return (models.DCGANGenerator(z_dim=config.z_dim, width=config.width, resolution=resolution,
                                      channels=channels),
                models.DCGANDiscriminator(width=config.width, resolution=resolution, channels=channels,
                                          norm=config.resolved("d_norm")))
    if config.model == "transformer":  # DCGAN's G against an attention D
        return (models.DCGANGenerator(z_dim=config.z_dim, width=config.width, resolution=resolution,
                                      channels=channels),
                models.TransformerDiscriminator(width=2 * config.width, resolution=resolution, channels=channels,
                                                stem="conv", pool="cls"))
    return (models.ResNetGenerator(z_dim=config.z_dim, width=config.width, resolution=resolution, channels=channels),
            models.ResNetDiscriminator(width=config.width, resolution=resolution, channels=channels))


def describe_discriminator(config: TrainConfig) -> str:
    """D's family, width and normalization, e.g. ``dcgan width 32, batch norm``."""
    if config.model == "mlp":
        return "mlp"
    if config.model == "transformer":
        return (f"transformer width {2 * config.width} (conv stem to 4x4 patches, class token, 2 attention blocks, "
                f"layer norm)")
    norm = {"batch": "batch norm", "layer": "layer norm", "none": "no normalization"}[config.resolved("d_norm")]
    return f"{config.model} width {config.width}, {norm}"


def describe_networks(config: TrainConfig) -> str:
    """One line naming the resolved architecture and regularizer of a run, printed when it starts."""
    if config.model == "mlp":
        nets = "G and D: MLPs"
    else:
        g_model = "dcgan" if config.model == "transformer" else config.model
        nets = (f"G: {g_model} width {config.width}; D: {describe_discriminator(config)}; "
                f"{config.resolution}x{config.resolution}")
    spec = in_force(config.variant, config.reg)
    if not spec.has_penalty:
        return f"{nets}; variant {config.variant}, no gradient penalty"
    reg = spec.name
    weight = f"{spec.symbol}={config.resolved('gamma'):g}"
    if config.gamma_anneal is not None:
        weight += f" annealed by {config.gamma_anneal:g}^(t/{config.steps})"
    forward = f", {config.d_forward} real/fake forwards" if spec.shares_logits else ""
    every = f", every {config.reg_every} D steps" if config.reg_every > 1 else ""
    every += f", on {config.reg_fraction:g} of each batch's rows" if config.reg_fraction < 1 else ""
    every += f", {config.penalty_grad} gradient" if config.penalty_grad != "exact" else ""
    return f"{nets}; variant {config.variant}, reg {reg} ({weight}{every}{forward})"


def optimizer(config: TrainConfig, params, lr: float, capturable: bool = False) -> torch.optim.Optimizer:
    """The variant's optimizer; ``capturable`` keeps its step counters on the device so that its step
    can be captured in a CUDA graph (config ``cuda_graphs``)."""
    if config.resolved("optimizer") == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, capturable=capturable)
    return torch.optim.Adam(params, lr=lr, betas=tuple(config.resolved("betas")), capturable=capturable)


def gamma_schedule(config: TrainConfig) -> schedules.Schedule:
    """Roth's gamma_t = gamma0 * alpha^(t/T) when annealed, else a constant. ``t`` is the generator
    iteration and ``T`` = ``config.steps``: every D step of one iteration shares gamma_t, as in the
    authors' code (their gamma decays with the global step, which counts generator iterations)."""
    gamma = config.resolved("gamma")
    if config.gamma_anneal is not None:
        return schedules.ExponentialAnneal(gamma, config.gamma_anneal, total_steps=config.steps)
    return schedules.Constant(gamma)


def noise_schedule(config: TrainConfig) -> schedules.Schedule:
    """Instance-noise sigma_t over G steps: constant, or decaying from sigma_0 to 0."""
    if config.noise == 0 or config.noise_schedule == "constant":
        return schedules.Constant(config.noise)
    if config.noise_schedule == "linear":
        return schedules.LinearDecay(config.noise, total_steps=config.steps)
    return schedules.ExponentialDecay(config.noise, total_steps=config.steps)
