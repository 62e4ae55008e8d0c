"""Several simulated machines publishing to one topic, keyed by machine id.

Machine ``i`` of :func:`fleet_publishers` differs from the others in its parts on
the plate, its sensor rate and its defect plan, so a fleet view has something to
compare; every message is keyed by the machine id (``m01``, ``m02``, …), which puts
each machine on one partition and gives the worker its pipeline.

>>> pubs = fleet_publishers(3, ["memory://doc-fleet-sim"], "fleet", rate=20_000,
...                         builds=1, n_points=500)
>>> [(p.key, p.rate, len(p.parts), p.n_defects) for p in pubs]
[('m01', 20000.0, 4, 0), ('m02', 26000.0, 1, 0), ('m03', 32000.0, 3, 0)]
>>> for p in pubs:
...     p.run()
>>> sum(p.published for p in pubs)
1500
"""

from __future__ import annotations

from typing import Any

from am_qadf.machine_profile import MachineProfile
from am_qadf.simulation.publisher import SimulationPublisher
from am_qadf.simulation.scan_path import DEFAULT_PARTS, Part

__all__ = ["FLEET_LAYOUTS", "fleet_publishers", "machine_ids"]

#: Plate layouts the simulated machines cycle through.
FLEET_LAYOUTS: tuple[tuple[Part, ...], ...] = (
    DEFAULT_PARTS,
    (Part("bracket", "box", (125.0, 125.0), (20.0, 12.0), 6.0),),
    (
        Part("pin_a", "cylinder", (80.0, 80.0), (6.0, 6.0), 8.0),
        Part("pin_b", "cylinder", (170.0, 170.0), (6.0, 6.0), 8.0),
        Part("plate", "box", (125.0, 170.0), (25.0, 8.0), 4.0),
    ),
    (Part("block", "box", (60.0, 190.0), (14.0, 14.0), 12.0, overhang=5.0, overhang_z=3.0),),
)
#: Defects planned per machine (cycled): some machines run clean.
DEFECT_PLANS: tuple[int, ...] = (24, 8, 0, 16)
# the simulator needs a warm-up and about this many points per planned defect
_WARMUP, _PER_DEFECT = 20_000, 5_000


def machine_ids(n: int) -> list[str]:
    """Ids of ``n`` simulated machines.

    >>> machine_ids(2)
    ['m01', 'm02']
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 99:
        raise ValueError(f"machines must be an int between 1 and 99, got {n!r}")
    return [f"m{i + 1:02d}" for i in range(n)]


def fleet_publishers(
    n: int,
    bootstrap_servers: list[str],
    topic: str,
    *,
    rate: float = 5000.0,
    seed: int = 7,
    builds: int | None = None,
    n_points: int | None = None,
    kafka_config: dict[str, Any] | None = None,
) -> list[SimulationPublisher]:
    """One :class:`SimulationPublisher` per machine (not started). Machine ``i``
    publishes at ``rate × (1 + 0.3 i)`` messages per second with the ``i``-th
    layout and defect plan (fewer defects when ``n_points`` is too small for them);
    every message carries its build's layer count (the profile's ``layer_count``)."""
    layer_count = MachineProfile.default().fields.layer_count
    pubs = []
    for i, machine in enumerate(machine_ids(n)):
        defects = DEFECT_PLANS[i % len(DEFECT_PLANS)]
        if n_points is not None:
            defects = min(defects, max(0, (n_points - _WARMUP) // _PER_DEFECT))
        pubs.append(
            SimulationPublisher(
                bootstrap_servers,
                topic,
                rate=rate * (1.0 + 0.3 * i),
                seed=seed + 100 * i,
                builds=builds,
                n_points=n_points,
                n_defects=defects,
                kafka_config=kafka_config,
                key=machine,
                parts=FLEET_LAYOUTS[i % len(FLEET_LAYOUTS)],
                layer_count_field=layer_count,
            )
        )
    return pubs
