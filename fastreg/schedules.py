r"""Schedules of regularizer weights, noise levels and the lens weight (docs/design.md sections 3, 5).

A schedule maps a step counter ``t`` to a value. ``schedule(t)`` evaluates it at any ``t``
(pure); a schedule also keeps its own counter: ``schedule.value`` is the value at it and
``schedule.step()`` advances it. ``state_dict()`` / ``load_state_dict()`` save and restore the
counter and the parameters, so a resumed run continues the same curve.

- :class:`Constant`: :math:`c` (Roth et al. 2017's constant :math:`\gamma = 0.1`).
- :class:`ExponentialAnneal`: :math:`v_0\,\alpha^{t/T}` (Roth et al. 2017's annealed
  :math:`\gamma_t = \gamma_0\,\alpha^{t/T}`, :math:`\gamma_0 = 2`, :math:`\alpha = 0.01`).
- :class:`LinearDecay`, :class:`ExponentialDecay`: instance-noise :math:`\sigma_t` annealed to 0
  (Arjovsky & Bottou 2017).
- :class:`LensSchedule`: :math:`\lambda_t = 1 - \sin(t\pi/(2K))` for :math:`t \le K`, else 0
  (Sajjadi et al. 2018, Tempered Adversarial Networks).
"""

from __future__ import annotations

import math

from .regularizers.table import REGULARIZERS

ROTH_GAMMA0 = REGULARIZERS["roth"].annealed_start  # 2.0
ROTH_ALPHA = REGULARIZERS["roth"].anneal_alpha     # 0.01
LENS_K = 10_000


class Schedule:
    """Base class: a value as a function of the step ``t``, plus a counter and its state."""

    _params: tuple[str, ...] = ()

    def __init__(self):
        self.t = 0

    def __call__(self, t: int | float) -> float:
        """The value at step ``t``."""
        if t < 0:
            raise ValueError(f"{type(self).__name__}: step t must be >= 0, got {t}")
        return self.value_at(t)

    def value_at(self, t: int | float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def value(self) -> float:
        """The value at the schedule's own counter."""
        return self(self.t)

    def step(self) -> float:
        """Advance the counter by one and return the new value."""
        self.t += 1
        return self.value

    def state_dict(self) -> dict:
        """The counter and the parameters."""
        return {"t": self.t, **{name: getattr(self, name) for name in self._params}}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved; ValueError on missing or unknown keys."""
        expected = {"t", *self._params}
        if set(state) != expected:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state has keys {sorted(state)}, "
                             f"expected {sorted(expected)}")
        for name in self._params:
            setattr(self, name, state[name])
        self.t = state["t"]

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._params)
        return f"{type(self).__name__}({args})"


def _positive(who: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{who}: {name} must be > 0, got {value!r}")


def _non_negative(who: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{who}: {name} must be >= 0, got {value!r}")


class Constant(Schedule):
    r""":math:`v_t = c`. Roth et al. 2017's constant :math:`\gamma` is 0.1."""

    _params = ("constant",)

    def __init__(self, constant: float):
        super().__init__()
        _non_negative("Constant", "constant", constant)
        self.constant = constant

    def value_at(self, t):
        return self.constant


class ExponentialAnneal(Schedule):
    r""":math:`v_t = v_0\,\alpha^{t/T}`: Roth, Lucchi, Nowozin, Hofmann 2017's annealed
    regularizer weight :math:`\gamma_t = \gamma_0\,\alpha^{t/T}` (:math:`\gamma_0 = 2`,
    :math:`\alpha = 0.01`). Exponent convention: ``t`` counts generator iterations and ``T`` =
    ``total_steps`` is their total, so :math:`\gamma` falls by the factor :math:`\alpha` over the
    run and every D step of one iteration shares :math:`\gamma_t` (the authors' code decays
    :math:`\gamma` with the global step, which counts generator iterations). The formula holds
    for every ``t``, also past ``T``."""

    _params = ("start", "alpha", "total_steps")

    def __init__(self, start: float = ROTH_GAMMA0, alpha: float = ROTH_ALPHA, *, total_steps: int):
        super().__init__()
        _non_negative("ExponentialAnneal", "start", start)
        _positive("ExponentialAnneal", "alpha", alpha)
        _positive("ExponentialAnneal", "total_steps", total_steps)
        self.start, self.alpha, self.total_steps = start, alpha, total_steps

    def value_at(self, t):
        return self.start * self.alpha ** (t / self.total_steps)


class LinearDecay(Schedule):
    r""":math:`\sigma_t = \sigma_0\,(1 - t/T)` for :math:`t \le T`, then 0: instance noise annealed
    linearly to 0 (Arjovsky & Bottou 2017, "Towards Principled Methods for Training GANs")."""

    _params = ("start", "total_steps")

    def __init__(self, start: float, *, total_steps: int):
        super().__init__()
        _non_negative("LinearDecay", "start", start)
        _positive("LinearDecay", "total_steps", total_steps)
        self.start, self.total_steps = start, total_steps

    def value_at(self, t):
        return self.start * max(0.0, 1.0 - t / self.total_steps)


class ExponentialDecay(Schedule):
    r""":math:`\sigma_t = \sigma_0\,r^{t/T}` for :math:`t < T`, then 0: instance noise annealed
    exponentially, from :math:`\sigma_0` to :math:`r\,\sigma_0` over ``total_steps`` ``T`` and
    switched off after (Arjovsky & Bottou 2017). ``ratio`` :math:`r` defaults to 0.01."""

    _params = ("start", "ratio", "total_steps")

    def __init__(self, start: float, ratio: float = 0.01, *, total_steps: int):
        super().__init__()
        _non_negative("ExponentialDecay", "start", start)
        _positive("ExponentialDecay", "ratio", ratio)
        _positive("ExponentialDecay", "total_steps", total_steps)
        self.start, self.ratio, self.total_steps = start, ratio, total_steps

    def value_at(self, t):
        return self.start * self.ratio ** (t / self.total_steps) if t < self.total_steps else 0.0


class LensSchedule(Schedule):
    r""":math:`\lambda_t = 1 - \sin(t\pi/(2K))` for :math:`t \le K`, else 0: the weight of the lens's
    adversarial loss in Sajjadi, Parascandolo, Mehrjou, Schölkopf 2018, "Tempered Adversarial
    Networks" (paper default :math:`K = 10^5`)."""

    _params = ("K",)

    def __init__(self, K: int = LENS_K):
        super().__init__()
        _positive("LensSchedule", "K", K)
        self.K = K

    def value_at(self, t):
        return 1.0 - math.sin(t * math.pi / (2 * self.K)) if t <= self.K else 0.0


SCHEDULES = {
    "constant": Constant,
    "exponential_anneal": ExponentialAnneal,
    "linear": LinearDecay,
    "exponential": ExponentialDecay,
    "lens": LensSchedule,
}


def get_schedule(name: str, *args, **kwargs) -> Schedule:
    """Build the schedule called ``name`` (a key of :data:`SCHEDULES`) with the given arguments."""
    try:
        cls = SCHEDULES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown schedule {name!r}; expected one of {', '.join(SCHEDULES)}") from None
    return cls(*args, **kwargs)
