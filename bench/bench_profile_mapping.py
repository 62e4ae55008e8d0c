"""Benchmark ingestion by machine profile: what mapping a machine's messages onto the
canonical names costs, against the processing of the same batches in the same run.

Run ``python bench/bench_profile_mapping.py``. Batches of 1,000 messages go through
``StreamingClient.process_stream_batch`` with the built-in processors (voxel, quality,
SPC, alerts), as the consumer thread runs them:

* simulator messages with the simulator's profile: the mapper only counts missing
  fields and points off the plate (identity profile, nothing mapped);
* the same points in the EOS example profile's shape (``ts`` epoch ms, ``pos_x``,
  ``layer_no`` x thickness for z, °C and mV converted): full mapping.

Printed: the mapper's time inside the batch, and the whole batch time against the
baseline in the same run: the same batches with the mapper switched off (for the EOS
shape, the baseline is the simulator-shaped batches, which need no mapping: the
processors see the same canonical messages either way). The mapper's own time includes
converting columns the processors then reuse from the cache. Nothing is asserted.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from am_qadf.machine_profile import MachineProfile  # noqa: E402
from am_qadf.simulation import BuildSimulator  # noqa: E402
from am_qadf.streaming import StreamingClient, StreamingConfig  # noqa: E402
from am_qadf.voxelization.voxel_grid import VoxelGrid  # noqa: E402

EOS = Path(__file__).resolve().parents[1] / "assets" / "profiles" / "eos-m290-example.toml"
BATCHES = 40
ROUNDS = 5


def _run(
    profile: MachineProfile, batches: list[list[dict]], *, mapping: bool = True
) -> tuple[float, float]:
    """Median batch time and median mapper time (ms) over ``batches`` (``mapping=False``:
    the mapper does nothing, the baseline)."""
    lo, hi = profile.plate_bounds
    client = StreamingClient(
        StreamingConfig.embedded(enable_redis_cache=False, enable_mongodb_storage=False),
        profile=profile,
    ).with_default_processors(VoxelGrid(lo, hi, profile.machine.voxel_mm))
    mapper = client.mapper
    inner = mapper.map_batch
    spent: list[float] = []

    def timed(batch, cache=None):  # noqa: ANN001, ANN202 - a thin timing wrapper
        t = time.perf_counter()
        if mapping:
            inner(batch, cache)
        spent.append((time.perf_counter() - t) * 1e3)

    mapper.map_batch = timed
    total = []
    for b in batches:
        t = time.perf_counter()
        client.process_stream_batch(b)
        total.append((time.perf_counter() - t) * 1e3)
    return statistics.median(total), statistics.median(spent)


def _eos_shape(
    batches: list[list[dict]], profile: MachineProfile
) -> tuple[list[list[dict]], list[list[dict]]]:
    """The simulator's points as the EOS profile's canonical messages, and in the
    machine's own shape (``profile.to_raw``)."""
    rename = {"intensity": "photodiode", "power": "laser_power"}
    drop = ("melt_pool_area", "scan_speed", "value")
    canonical = []
    for b in batches:
        rows = []
        for m in b:
            c = {rename.get(k, k): v for k, v in m.items() if k not in drop}
            if c.get("photodiode") is not None:
                c["photodiode"] /= 500.0
            rows.append(c)
        canonical.append(rows)
    return canonical, [[profile.to_raw(m) for m in b] for b in canonical]


def main() -> None:
    sim = BuildSimulator(seed=3, n_points=BATCHES * 1000, n_defects=0)
    plain = list(sim.iter_batches(1000))[:BATCHES]
    eos = MachineProfile.load(EOS)
    canonical, shaped = _eos_shape(plain, eos)
    sim = MachineProfile.default()

    def copies(bs: list[list[dict]]) -> list[list[dict]]:
        return [[dict(m) for m in b] for b in bs]

    runs: dict[str, list[tuple[float, float]]] = {
        "base_sim": [],
        "sim": [],
        "base_eos": [],
        "eos": [],
    }
    for _ in range(ROUNDS):  # interleaved, best of ROUNDS: other load on the machine evens out
        runs["base_sim"].append(_run(sim, copies(plain), mapping=False))
        runs["sim"].append(_run(sim, copies(plain)))
        runs["base_eos"].append(_run(eos, copies(canonical), mapping=False))  # canonical already
        runs["eos"].append(_run(eos, copies(shaped)))
    (base_sim, _), (sim_total, sim_map), (base_eos, _), (eos_total, eos_map) = (
        min(runs[k]) for k in ("base_sim", "sim", "base_eos", "eos")
    )
    print(f"batches of 1,000 messages, median of {BATCHES}, best of {ROUNDS} rounds")
    print(
        f"simulator profile (identity): batch {sim_total:.2f} ms vs {base_sim:.2f} ms without "
        f"the mapper = {sim_total / base_sim:.2f}x; mapper {sim_map:.3f} ms"
    )
    print(
        f"EOS profile (full mapping):   batch {eos_total:.2f} ms vs {base_eos:.2f} ms for the "
        f"same canonical messages = {eos_total / base_eos:.2f}x; mapper {eos_map:.3f} ms"
    )


if __name__ == "__main__":
    main()
