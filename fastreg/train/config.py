"""The trainer's configuration: one dataclass, validated, YAML round-trip, CLI overrides.

Defaults follow docs/design.md section 3: each variant brings its optimizer, learning
rate, betas and n_critic from its source paper unless the config sets them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from ..regularizers import D_NORMS, FORWARD_MODES, PENALTY_GRADS, REGULARIZERS, check_config, in_force
from ..regularizers.table import d_norm_help, reg_help, weight_help

MODELS = ("dcgan", "resnet", "transformer", "mlp")
AMP_MODES = ("none", "bf16", "fp16")
NOISE_SCHEDULES = ("constant", "linear", "exponential")
NONFINITE_POLICIES = ("stop", "skip")
COMPILE_MODES = ("none", "generator", "forward")
MLP_INITS = ("pytorch", "truncated-normal")
LENS_VARIANTS = ("gan", "ns", "lsgan", "wgan-gp")  # docs/design.md section 5 defines the lens loss for these

# Per-variant optimizer defaults (docs/design.md section 3).
ADAM_DCGAN = {"optimizer": "adam", "lr_d": 2e-4, "lr_g": 2e-4, "betas": (0.5, 0.999), "n_critic": 1}
VARIANT_DEFAULTS = {
    "wgan": {"optimizer": "rmsprop", "lr_d": 5e-5, "lr_g": 5e-5, "betas": (0.0, 0.0), "n_critic": 5},
    "wgan-gp": {"optimizer": "adam", "lr_d": 1e-4, "lr_g": 1e-4, "betas": (0.0, 0.9), "n_critic": 5},
}
# Regularizer weights, presets, defaults of D's normalization and config rules: fastreg.regularizers.table.


MAX_SEED = 2**63 - 2  # torch.manual_seed takes 64 bits; the sample latents use seed + 1


class ConfigError(ValueError):
    """A config value is invalid; the message starts with the field's name."""


@dataclass
class TrainConfig:
    """Everything a training run needs. See `fastreg train --help` for each field."""

    variant: str = field(default="ns", metadata={"help": "gan, ns, lsgan, wgan, wgan-gp, fgan:<div>, bgan, vral"})
    reg: str = field(default="none", metadata={"help": reg_help()})
    gamma: float | None = field(default=None, metadata={"help": weight_help()})
    gamma_anneal: float | None = field(default=None, metadata={
        "help": "Roth's annealing gamma_t = gamma0 * alpha^(t/T), t the generator iteration (shared by its D steps), "
                "T = steps: alpha (the paper's 0.01); unset = constant"})
    d_forward: str = field(default="auto", metadata={
        "help": "Roth's penalty: D on real and fake batches in one joint forward or in separate forwards (per-batch "
                "statistics, the authors' protocol); auto = separate when D has batch norm, else joint; joint with "
                "batch norm is refused"})
    penalty_grad: str = field(default="exact", metadata={
        "help": "the penalty's parameter gradient: exact (double backward through D) or finite-difference (the "
                "same penalty value, a one-sided finite-difference gradient with first-order autograd only; works with "
                "compile=forward and fused attention; fastreg.regularizers.finite_difference). D must be "
                "deterministic between its forwards: a D with dropout in training mode is refused"})
    reg_every: int = field(default=1, metadata={"help": "lazy regularization: penalty every k D steps, weight x k"})
    reg_fraction: float = field(default=1.0, metadata={
        "help": "sub-batch penalty: the penalty on this fraction of each batch's rows, in (0, 1] (an unbiased "
                "estimate of the batch's; fastreg.regularizers.subbatch); 1 = every row"})
    noise: float = field(default=0.0, metadata={"help": "instance noise sigma_0 (Arjovsky & Bottou); 0 = off"})
    noise_schedule: str = field(default="linear", metadata={"help": "noise decay to 0: constant, linear, exponential"})
    lens: bool = field(default=False, metadata={"help": "Tempered GAN lens on real data (Sajjadi et al. 2018)"})
    lens_k: int = field(default=10_000, metadata={"help": "lens schedule length K: lambda_t = 1 - sin(t pi / 2K) "
                                                          "(Sajjadi et al. 2018: 10k in all experiments)"})
    lens_width: int = field(default=64, metadata={"help": "channels of the lens's 8 residual blocks"})
    vral_mu_real: float = field(default=1.0, metadata={"help": "VRAL mu_r"})
    vral_mu_fake: float = field(default=0.0, metadata={"help": "VRAL mu_f (-1 for CelebA/LSUN)"})
    data: str = field(default="digits", metadata={"help": "dataset name (fastreg.data.available())"})
    data_root: str | None = field(default=None, metadata={"help": "folder of a local dataset"})
    resolution: int = field(default=32, metadata={"help": "image side (8 to 64, a power of two)"})
    model: str = field(default="dcgan", metadata={
        "help": "dcgan, resnet, transformer (DCGAN's G, a ViT D with fused attention; needs penalty_grad "
                "finite-difference under a gradient penalty), or mlp (toy data)"})
    width: int = field(default=64, metadata={"help": "channel width C of G and D"})
    d_norm: str | None = field(default=None, metadata={"help": d_norm_help()})
    mlp_init: str = field(default="pytorch", metadata={
        "help": "toy MLP weights: pytorch (its default initialisation) or truncated-normal (std 0.1 truncated at "
                "2 std, zero biases: Roth et al.'s toy script)"})
    z_dim: int = field(default=100, metadata={"help": "latent dimension"})
    batch_size: int = field(default=64, metadata={"help": "samples per D and G step (per process under torchrun)"})
    steps: int = field(default=3000, metadata={"help": "generator steps"})
    n_critic: int | None = field(default=None, metadata={"help": "D steps per G step (variant default)"})
    optimizer: str | None = field(default=None, metadata={"help": "adam or rmsprop (variant default)"})
    lr_d: float | None = field(default=None, metadata={"help": "D learning rate (variant default)"})
    lr_g: float | None = field(default=None, metadata={"help": "G learning rate (variant default)"})
    betas: tuple[float, float] | None = field(default=None, metadata={"help": "Adam betas (variant default)"})
    ema: float = field(default=0.999, metadata={"help": "generator EMA decay; 0 = off"})
    ema_warmup: bool = field(default=True, metadata={
        "help": "ramp the EMA in: at G step t the decay is min(ema, (1 + t) / (10 + t)) (the num_updates rule of "
                "TensorFlow's ExponentialMovingAverage), so a short run's samples and evaluations are not the "
                "initial G's; off: the decay is ema from the first step"})
    amp: str = field(default="none", metadata={"help": "mixed precision: none, bf16, fp16"})
    dtype: str = field(default="float32", metadata={"help": "parameter dtype: float32 or float64"})
    seed: int = field(default=0, metadata={"help": "seed of torch, numpy and python"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:N or auto"})
    out: str = field(default="runs/default", metadata={"help": "run folder"})
    log_every: int = field(default=25, metadata={"help": "metrics.jsonl and progress bar every N steps"})
    sample_every: int = field(default=500, metadata={"help": "sample grid every N steps"})
    checkpoint_every: int = field(default=1000, metadata={"help": "checkpoint every N steps"})
    keep_checkpoints: int = field(default=3, metadata={"help": "checkpoints kept"})
    on_nonfinite: str = field(default="stop", metadata={
        "help": "a NaN/inf loss, penalty, batch or gradient: stop (keep the last good checkpoint, write "
                "nonfinite_step_N.json, exit 3) or skip (drop that update, count it in the metrics)"})
    nonfinite_check_every: int | None = field(default=None, metadata={
        "help": "CUDA runs: read the stop policy's device flags every N steps and before each checkpoint "
                "(unset: every log_every steps); CPU runs check every update"})
    sync_batchnorm: bool = field(default=False, metadata={
        "help": "under torchrun: BatchNorm statistics over the global batch (otherwise per process, with "
                "rank 0's running statistics broadcast every step)"})
    eval_every: int = field(default=0, metadata={
        "help": "every N steps (and at the end) FID/KID of the EMA generator, or toy metrics, into metrics.jsonl; "
                "0 = off"})
    eval_samples: int = field(default=1000, metadata={"help": "generated samples per evaluation"})
    eval_extractor: str = field(default="auto", metadata={
        "help": "FID/KID features: auto, classifier[:<dataset>], inception[:<weights file>] or raw"})
    compile: str = field(default="none", metadata={
        "help": "torch.compile the networks' forward: none, generator (G only; works with every variant and "
                "regularizer), forward (G and D; with a gradient penalty only under penalty_grad=finite-difference: "
                "torch.compile does not support the exact gradient's double backward)"})
    cuda_graphs: bool = field(default=False, metadata={
        "help": "capture the D step and the G step in CUDA graphs and replay them (CUDA only; falls back to eager "
                "steps with a warning under torchrun, amp=fp16, on_nonfinite=skip, lens, vral or on the CPU)"})

    # --- derived values -------------------------------------------------------------------------

    def effective_reg(self) -> str:
        """The name of the penalty in force (:func:`fastreg.regularizers.in_force`: wgan-gp carries gp)."""
        return in_force(self.variant, self.reg).name

    def variant_defaults(self) -> dict:
        return VARIANT_DEFAULTS.get(self.variant, ADAM_DCGAN)

    def resolved(self, name: str) -> Any:
        """The value in force for an optional field: the config's, else the variant's default."""
        value = getattr(self, name)
        if value is not None:
            return value
        if name == "gamma":
            return in_force(self.variant, self.reg).default_weight(annealed=self.gamma_anneal is not None)
        if name == "d_norm":
            # The regularizer's paper decides (fastreg.regularizers.table); the MLP and ResNet Ds have no norm layers.
            return in_force(self.variant, self.reg).d_norm if self.model == "dcgan" else "none"
        return self.variant_defaults()[name]

    def with_resolved_architecture(self) -> "TrainConfig":
        """This config with ``d_norm`` resolved, so config.yaml records the D that was trained."""
        return dataclasses.replace(self, d_norm=self.resolved("d_norm"))

    # --- validation -----------------------------------------------------------------------------

    def validate(self) -> "TrainConfig":
        """Raise ConfigError naming the first invalid field; returns self."""
        from .. import data, losses

        for f in fields(self):  # the declared types first (a config built in Python skips from_dict)
            check_type(f.name, getattr(self, f.name))
        _check_choice("variant", self.variant, losses.available())
        _check_choice("data", self.data.partition(":")[0], data.available())
        _check_choice("dtype", self.dtype, ("float32", "float64"))
        _check_choice("reg", self.reg, REGULARIZERS)
        _check_choice("model", self.model, MODELS)
        _check_choice("amp", self.amp, AMP_MODES)
        _check_choice("noise_schedule", self.noise_schedule, NOISE_SCHEDULES)
        _check_choice("on_nonfinite", self.on_nonfinite, NONFINITE_POLICIES)
        _check_choice("compile", self.compile, COMPILE_MODES)
        _check_choice("d_forward", self.d_forward, FORWARD_MODES)
        _check_choice("penalty_grad", self.penalty_grad, PENALTY_GRADS)
        _check_choice("mlp_init", self.mlp_init, MLP_INITS)
        if self.mlp_init != "pytorch" and self.model != "mlp":
            raise ConfigError(f"mlp_init: {self.mlp_init!r} initialises the toy MLPs; model {self.model!r} takes "
                              "pytorch")
        if self.d_norm is not None:
            _check_choice("d_norm", self.d_norm, D_NORMS)
            if self.model != "dcgan" and self.d_norm != "none":
                raise ConfigError(f"d_norm: the {self.model} discriminator has no normalization layers; "
                                  f"{self.d_norm!r} needs model dcgan")
        if self.optimizer is not None:
            _check_choice("optimizer", self.optimizer, ("adam", "rmsprop"))
        try:  # the regularizer's rules are its table's (fastreg.regularizers.table.check_config)
            check_config(self.variant, self.reg, d_forward=self.d_forward, gamma_anneal=self.gamma_anneal,
                         penalty_grad=self.penalty_grad, model=self.model, compile=self.compile,
                         reg_fraction=self.reg_fraction)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        toy = self.data in data.TOY
        if toy != (self.model == "mlp"):
            want = "mlp" if toy else "dcgan, resnet or transformer"
            raise ConfigError(f"model: {self.model!r} does not fit data {self.data!r}; use {want}")
        if self.lens and toy:
            raise ConfigError("lens: the Tempered lens is a convolutional network for image data")
        if self.lens and self.variant not in LENS_VARIANTS:
            raise ConfigError(f"lens: the Tempered lens is defined for {', '.join(LENS_VARIANTS)}, "
                              f"not variant {self.variant!r}")
        for name in ("gamma", "noise", "lr_d", "lr_g"):
            _check_non_negative(name, getattr(self, name))
        for name in ("vral_mu_real", "vral_mu_fake"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name}: must be a finite number, got {value!r}")
        if self.gamma_anneal is not None and not 0 < self.gamma_anneal <= 1:
            raise ConfigError(f"gamma_anneal: must lie in (0, 1], got {self.gamma_anneal}")
        for name in ("reg_every", "lens_k", "lens_width", "z_dim", "width", "batch_size", "steps", "log_every",
                     "sample_every", "checkpoint_every", "keep_checkpoints"):
            _check_positive_int(name, getattr(self, name))
        if self.n_critic is not None:
            _check_positive_int("n_critic", self.n_critic)
        if self.nonfinite_check_every is not None:
            _check_positive_int("nonfinite_check_every", self.nonfinite_check_every)
        if not 0 <= self.ema < 1:
            raise ConfigError(f"ema: decay must lie in [0, 1), got {self.ema}")
        if self.betas is not None and (len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas)):
            raise ConfigError(f"betas: expected two values in [0, 1), got {self.betas}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed: must be an integer from 0 to 2**63 - 2 ({MAX_SEED}), got {self.seed!r}")
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device: must be cpu, cuda, cuda:N or auto, got {self.device!r}")
        self.validate_evaluation()
        self.validate_speed_options()
        if self.model != "mlp":
            r = self.resolution
            if not (8 <= r <= 64 and r & (r - 1) == 0):
                raise ConfigError(f"resolution: must be a power of two from 8 to 64, got {r}")
        return self

    def validate_speed_options(self) -> None:
        """compile and cuda_graphs: the combinations that can never work (what only fails on some devices
        falls back at run time, see :mod:`fastreg.train.cuda_graphs`)."""
        if not isinstance(self.cuda_graphs, bool):
            raise ConfigError(f"cuda_graphs: must be true or false, got {self.cuda_graphs!r}")
        if self.cuda_graphs and self.compile != "none":
            raise ConfigError(f"compile: {self.compile!r} together with cuda_graphs is not supported; the captured "
                              "steps run the networks eagerly (use one of the two)")

    def validate_evaluation(self) -> None:
        """The eval_* fields: counts, and the extractor spec's form (nothing is loaded here)."""
        from ..metrics.extractors import INCEPTION_ENV, check_spec

        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ConfigError(f"eval_every: must be a non-negative integer (0 = off), got {self.eval_every!r}")
        _check_positive_int("eval_samples", self.eval_samples)
        if self.eval_samples < 2:
            raise ConfigError(f"eval_samples: FID needs at least 2 samples, got {self.eval_samples}")
        try:
            check_spec(self.eval_extractor)
        except ValueError as exc:
            raise ConfigError(f"eval_extractor: {str(exc).partition(': ')[2]}") from None
        kind, _, weights = self.eval_extractor.partition(":")
        if self.model == "mlp" and kind in ("classifier", "inception"):
            raise ConfigError(f"eval_extractor: {self.eval_extractor!r} needs images; toy data takes auto or raw")
        weights = weights or os.environ.get(INCEPTION_ENV, "")
        if self.eval_every and kind == "inception" and not os.path.isfile(weights):
            raise ConfigError(f"eval_extractor: no Inception weights file at {weights!r}; give inception:<file> "
                              f"or set {INCEPTION_ENV} (fastreg never downloads weights)")


def _check_choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: unknown value {value!r}; expected one of {', '.join(map(str, choices))}")


def _check_non_negative(name: str, value: float | None) -> None:
    if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0):
        raise ConfigError(f"{name}: must be a finite non-negative number, got {value!r}")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: must be a positive integer, got {value!r}")


# --- YAML and overrides -----------------------------------------------------------------------------

def to_dict(config: TrainConfig) -> dict:
    data = dataclasses.asdict(config)
    if data["betas"] is not None:
        data["betas"] = list(data["betas"])
    return data


def from_dict(data: dict) -> TrainConfig:
    data = dict(data)
    if "d_batchnorm" in data:  # run folders written before d_norm existed
        legacy = data.pop("d_batchnorm")
        data.setdefault("d_norm", None if legacy is None else ("batch" if legacy else "none"))
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: not a config field")
    for name, value in data.items():
        check_type(name, value)
    if data.get("betas") is not None:
        data["betas"] = tuple(float(b) for b in data["betas"])
    return TrainConfig(**data)


def check_type(name: str, value: Any) -> None:
    """ConfigError naming ``name`` unless ``value`` has the type :class:`TrainConfig` declares for it (its
    annotation: ``int``, ``float`` (an int is a float too), ``str``, ``bool``, ``tuple[float, float]``, each
    optionally ``| None``); the one check behind YAML files, checkpoints' configs and command-line flags."""
    hint = _type_hints()[name]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return
    for option in options:
        if option is type(None):
            continue
        if typing.get_origin(option) is tuple:
            if isinstance(value, (list, tuple)) and len(value) == len(typing.get_args(option)) \
                    and all(_is_number(v) for v in value):
                return
        elif option is float and _is_number(value):
            return
        elif option is int and isinstance(value, int) and not isinstance(value, bool):
            return
        elif option in (str, bool) and isinstance(value, option):
            return
    expected = " or ".join(_TYPE_WORDS.get(o, str(o)) for o in options)
    hint_text = ""
    if isinstance(value, str) and _is_number_text(value) and any(o in (int, float) for o in options):
        hint_text = " (a string: YAML reads a number such as 1e-4 as text; write 1.0e-4)"
    raise ConfigError(f"{name}: must be {expected}, got {value!r}{hint_text}")


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null",
               tuple[float, float]: "a list of two numbers"}


@functools.cache
def _type_hints() -> dict:
    return typing.get_type_hints(TrainConfig)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def save_yaml(config: TrainConfig, path: str) -> None:
    import yaml

    from ..atomic import write_text

    write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def load_yaml(path: str) -> TrainConfig:
    import yaml

    if not os.path.isfile(path):
        raise ConfigError(f"config: no such file {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config: {path} is not valid YAML ({exc})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config: {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                              f"{exc.start}); save it as UTF-8") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping of field: value")
    return from_dict(data)
