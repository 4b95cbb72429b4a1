"""fastreg.schedules: closed-form values, counters, state round trips, errors."""

import math

import pytest

from fastreg import schedules


def test_constant():
    s = schedules.Constant(0.1)
    assert [s(t) for t in (0, 1, 10 ** 6)] == [0.1, 0.1, 0.1]


def test_roth_annealing_defaults_and_values():
    s = schedules.ExponentialAnneal(total_steps=1000)
    assert (s.start, s.alpha) == (2.0, 0.01)  # gamma_0 and alpha of Roth et al. 2017
    assert s(0) == 2.0
    assert s(500) == pytest.approx(2.0 * 0.1, rel=1e-14)  # 0.01 ** 0.5
    assert s(1000) == pytest.approx(0.02, rel=1e-14)
    assert s(250) == pytest.approx(2.0 * 10 ** -0.5, rel=1e-14)
    assert s(2000) == pytest.approx(2e-4, rel=1e-14)  # the formula goes on past T


def test_linear_noise_decay():
    s = schedules.LinearDecay(0.5, total_steps=100)
    assert [s(0), s(25), s(50), s(100), s(150)] == [0.5, 0.375, 0.25, 0.0, 0.0]


def test_exponential_noise_decay_reaches_zero():
    s = schedules.ExponentialDecay(1.0, 0.01, total_steps=100)
    assert s(0) == 1.0
    assert s(50) == pytest.approx(0.1, rel=1e-14)
    assert s(99) == pytest.approx(0.01 ** 0.99, rel=1e-14)
    assert s(100) == 0.0 and s(10 ** 6) == 0.0


def test_lens_schedule():
    s = schedules.LensSchedule(K=90)
    assert s.K == 90 and schedules.LensSchedule().K == 10_000
    assert s(0) == 1.0
    assert s(30) == pytest.approx(0.5, abs=1e-15)         # 1 - sin(pi/6)
    assert s(45) == pytest.approx(1 - math.sqrt(0.5), abs=1e-15)
    assert s(90) == pytest.approx(0.0, abs=1e-15)
    assert s(91) == 0.0


@pytest.mark.parametrize("make", [
    lambda: schedules.Constant(0.3),
    lambda: schedules.ExponentialAnneal(total_steps=40),
    lambda: schedules.LinearDecay(1.0, total_steps=40),
    lambda: schedules.ExponentialDecay(1.0, total_steps=40),
    lambda: schedules.LensSchedule(K=40),
], ids=["constant", "anneal", "linear", "exponential", "lens"])
def test_counter_and_state_round_trip(make):
    s = make()
    assert s.t == 0 and s.value == s(0)
    for _ in range(7):
        last = s.step()
    assert s.t == 7 and last == s(7) == s.value
    state = s.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert resumed.t == 7 and resumed.value == s.value and resumed.step() == s.step() == s(8)
    with pytest.raises(ValueError, match="keys"):
        resumed.load_state_dict({"t": 3})


def test_state_restores_parameters():
    a = schedules.ExponentialAnneal(1.0, 0.5, total_steps=10)
    b = schedules.ExponentialAnneal(total_steps=99)
    b.load_state_dict(a.state_dict())
    assert (b.start, b.alpha, b.total_steps) == (1.0, 0.5, 10) and b(10) == 0.5


def test_get_schedule_and_errors():
    assert isinstance(schedules.get_schedule("lens", K=5), schedules.LensSchedule)
    assert schedules.get_schedule("exponential_anneal", total_steps=10)(10) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="schedule"):
        schedules.get_schedule("cosine")
    with pytest.raises(ValueError, match="total_steps"):
        schedules.ExponentialAnneal(total_steps=0)
    with pytest.raises(ValueError, match="K"):
        schedules.LensSchedule(K=-1)
    with pytest.raises(ValueError, match="alpha"):
        schedules.ExponentialAnneal(alpha=0.0, total_steps=10)
    with pytest.raises(ValueError, match="step"):
        schedules.Constant(1.0)(-1)
