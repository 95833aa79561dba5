"""The continuous part of a simulated GPU: power, energy and temperature over time.

Everything here is a pure function of seeded constants, the load history and the thermal
slowdown intervals, so a reading does not depend on how often the GPU was read. Power is a
load-dependent base plus seeded sinusoids; the energy counter is its exact integral (sinusoids
integrate in closed form), so energy is monotonic and consistent with power. Temperature relaxes
exponentially toward a load-dependent target. Load changes close a segment at their own time.
"""

from __future__ import annotations

import math
import random

from agent.gpu.sim_profiles import SkuProfile

TEMP_TAU_S = 45.0  # thermal time constant
PEAK_POWER_FRACTION = 0.92  # full load draws this fraction of the power limit


class Waves:
    """A sum of seeded sinusoids: value(t) and its exact integral."""

    __slots__ = ("_terms",)

    def __init__(self, rng: random.Random, periods: tuple[tuple[float, float], ...]) -> None:
        self._terms = tuple(
            (rng.uniform(0.6, 1.0), 2 * math.pi / rng.uniform(lo, hi), rng.uniform(0, 2 * math.pi))
            for lo, hi in periods
        )

    def value(self, t: float) -> float:
        """Sum of the sinusoids at t (each amplitude at most 1)."""
        return sum(a * math.sin(w * t + p) for a, w, p in self._terms)

    def integral(self, t0: float, t1: float) -> float:
        """Exact integral of `value` from t0 to t1."""
        return sum(a / w * (math.cos(w * t0 + p) - math.cos(w * t1 + p)) for a, w, p in self._terms)


class PowerThermal:
    """Power, energy and temperature of one GPU, as functions of elapsed time."""

    def __init__(self, profile: SkuProfile, rng: random.Random, load: float, t0: float) -> None:
        self.profile = profile
        self._temp_offset = rng.uniform(-2.5, 2.5)
        self._idle_w = profile.idle_power_w * rng.uniform(0.97, 1.03)
        self._power_waves = Waves(rng, ((5.0, 17.0), (29.0, 71.0)))
        self._temp_waves = Waves(rng, ((11.0, 37.0),))
        # energy since driver load: the driver was loaded 1-30 days ago, mostly idle since
        self._seg_energy_j = self._idle_w * rng.uniform(86_400, 30 * 86_400)
        self._load, self._seg_t = load, t0
        self._seg_temp = self._temp_target(load)
        self._thermal: list[tuple[float, float]] = []  # [start, end) of HW thermal slowdown

    @property
    def load(self) -> float:
        """Current load 0..1."""
        return self._load

    def _power_base(self, load: float) -> float:
        peak = self.profile.power_limit_w * PEAK_POWER_FRACTION
        return self._idle_w + load * (peak - self._idle_w)

    def _noise_scale(self, load: float) -> float:
        return 0.012 * self.profile.power_limit_w * (0.2 + load)

    def _temp_target(self, load: float) -> float:
        p = self.profile
        return p.idle_temp_c + load * (p.load_temp_c - p.idle_temp_c) + self._temp_offset

    def power_w(self, t: float) -> float:
        """Instantaneous board power at t (always positive, below the limit)."""
        scale = self._noise_scale(self._load)
        return self._power_base(self._load) + scale * self._power_waves.value(t)

    def energy_j(self, t: float) -> float:
        """Energy since driver load at t: the exact integral of `power_w`."""
        t0, load = self._seg_t, self._load
        return (
            self._seg_energy_j
            + self._power_base(load) * (t - t0)
            + self._noise_scale(load) * self._power_waves.integral(t0, t)
        )

    def _base_temp(self, t: float) -> float:
        target = self._temp_target(self._load)
        return target + (self._seg_temp - target) * math.exp(-(t - self._seg_t) / TEMP_TAU_S)

    def set_load(self, t: float, load: float) -> None:
        """From time t on, run at `load` (0..1)."""
        self._seg_energy_j = self.energy_j(t)
        self._seg_temp = self._base_temp(t)
        self._seg_t, self._load = t, load

    def start_thermal_slowdown(self, t: float, duration: float | None) -> None:
        """Hold the GPU at its slowdown threshold from t, for `duration` seconds or for good."""
        self._thermal.append((t, t + duration if duration else math.inf))

    def end_thermal_slowdown(self, t: float) -> None:
        """End every slowdown at t (a repair); their past time still counts."""
        self._thermal = [(s, min(e, t)) for s, e in self._thermal if s < t]

    def thermal_active(self, t: float) -> bool:
        """Whether the HW thermal slowdown is engaged at t."""
        return any(s <= t < e for s, e in self._thermal)

    def thermal_violation_ns(self, t: float) -> int:
        """Cumulative time spent in thermal slowdown up to t."""
        return int(sum(max(0.0, min(e, t) - s) for s, e in self._thermal) * 1e9)

    def temperature_c(self, t: float) -> float:
        """GPU core temperature at t."""
        p = self.profile
        wave = self._temp_waves.value(t)
        if self.thermal_active(t):
            return min(p.slowdown_temp_c + 0.5 + 0.3 * abs(wave), p.shutdown_temp_c - 0.5)
        temp = self._base_temp(t) + 0.6 * wave
        ended = [e for s, e in self._thermal if e <= t]
        if ended:  # cooling back down from the slowdown threshold
            end = max(ended)
            excess = max(0.0, p.slowdown_temp_c - self._base_temp(end))
            temp += excess * math.exp(-(t - end) / TEMP_TAU_S)
        return temp
