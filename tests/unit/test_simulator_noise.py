"""The simulator's sensor-noise model and subtle defect classes (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest

from am_qadf.simulation import SUBTLE_DEFECT_TYPES, BuildSimulator, ProcessModel


def test_noise_is_autocorrelated_with_the_stated_marginal_sd() -> None:
    x = ProcessModel(noise_ar=(0.8,)).noise(200_000, np.random.default_rng(0))
    assert x.std() == pytest.approx(1.0, rel=0.03)
    assert np.corrcoef(x[1:], x[:-1])[0, 1] == pytest.approx(0.8, abs=0.01)
    w = ProcessModel(noise_ar=()).noise(100_000, np.random.default_rng(0))
    assert abs(np.corrcoef(w[1:], w[:-1])[0, 1]) < 0.01
    with pytest.raises(ValueError, match="stationary"):
        ProcessModel(noise_ar=(0.7, 0.4))
    with pytest.raises(ValueError, match="noise_ar"):
        ProcessModel(noise_ar=[0.5])  # type: ignore[arg-type]


def test_temperature_noise_grows_with_temperature() -> None:
    m = ProcessModel(noise_temperature_exponent=2.0, transient_amplitude=0.0)
    n = 50_000
    args = (np.full(n, 280.0), np.full(n, 1000.0), np.full(n, 1e6))
    cold = m.respond(*args, np.ones(n), np.random.default_rng(1))["temperature"]
    hot = m.respond(*args, np.full(n, 1.2), np.random.default_rng(1))["temperature"]
    assert hot.std() / cold.std() == pytest.approx(1.2**2, rel=0.05)


def test_layer_offsets_shift_the_level_between_layers() -> None:
    def layer_means(model: ProcessModel) -> np.ndarray:
        sim = BuildSimulator(seed=3, n_points=400_000, n_defects=0, model=model)
        c = sim.columns()
        lay = c["layer"]
        hatch = c["scan_speed"] > 900  # hatch vectors only: contours run at another speed
        return np.array([np.mean(c["temperature"][(lay == k) & hatch]) for k in np.unique(lay)])

    flat = layer_means(ProcessModel(layer_shift=0.0))
    shifted = layer_means(ProcessModel(layer_shift=3.0))
    assert np.std(shifted) > 3 * np.std(flat) and np.std(shifted) > 35.0


@pytest.fixture(scope="module")
def subtle() -> tuple[BuildSimulator, dict[str, np.ndarray]]:
    model = ProcessModel(layer_shift=0.0, transient_amplitude=0.0, noise_ar=(0.5,))
    sim = BuildSimulator(
        seed=5,
        n_points=400_000,
        n_defects=24,
        defect_types=SUBTLE_DEFECT_TYPES,
        warmup_points=10_000,
        model=model,
    )
    return sim, sim.columns()


def test_subtle_defects_have_their_size_in_sigma(
    subtle: tuple[BuildSimulator, dict[str, np.ndarray]],
) -> None:
    sim, c = subtle
    m = sim.model
    assert {e.kind for e in sim.ground_truth} == set(SUBTLE_DEFECT_TYPES)
    pos = {int(i): k for k, i in enumerate(c["index"])}
    hatch = c["scan_speed"] > 900
    for e in sim.ground_truth:
        a = pos.get(e.start_index)
        if e.kind == "short_dropout":
            assert 20 <= e.n_points <= 40
            continue
        sign = -1.0 if e.mode == "down" else 1.0
        sl = slice(a, a + e.n_points)
        before = slice(a - 3000, a - 200)
        for s in ("temperature", "melt_pool_area", "intensity"):
            sd = m.noise_sigma(s)
            base = np.median(c[s][before][hatch[before]])
            inside = c[s][sl][hatch[sl]] if hatch[sl].sum() > 10 else c[s][sl]
            delta = (np.median(inside) - base) / sd
            if e.kind == "mean_shift" or (e.kind == "one_signal_shift" and s in e.signals):
                assert delta * sign == pytest.approx(e.magnitude, abs=0.6), (e, s)
            elif e.kind == "one_signal_shift":
                assert abs(delta) < 0.6, (e, s)  # the other signals stay put
        if e.kind == "slow_drift":
            tail = c["temperature"][a + e.n_points - 200 : a + e.n_points]
            base = np.median(c["temperature"][before])
            rise = (np.median(tail) - base) / m.noise_sigma("temperature")
            assert rise * sign == pytest.approx(e.magnitude * e.n_points / 1000, abs=0.8)
        elif e.kind == "variance_increase":
            ratio = np.var(np.diff(c["temperature"][sl])) / np.var(
                np.diff(c["temperature"][before])
            )
            assert ratio == pytest.approx(e.magnitude, rel=0.35)
        elif e.kind == "short_spike":
            s = e.signals[0]
            peak = np.max(sign * (c[s][sl] - np.median(c[s][before])))
            assert 1 <= e.n_points <= 5 and peak > (e.magnitude - 3.0) * m.noise_sigma(s)
