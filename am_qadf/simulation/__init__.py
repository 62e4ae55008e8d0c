"""Simulated L-PBF builds with ground-truthed defects, and replay of recordings.

>>> from am_qadf.simulation import BuildSimulator
>>> sim = BuildSimulator(seed=0, n_points=40_000, n_defects=5, warmup_points=5_000)
>>> len(sim.ground_truth), len(next(sim.iter_batches(batch_size=1000)))
(5, 1000)
"""

from am_qadf.simulation.build_simulator import MESSAGE_FIELDS, SIGNALS, BuildSimulator
from am_qadf.simulation.defects import (
    ALL_DEFECT_TYPES,
    DEFECT_TYPES,
    DROPOUT_MODES,
    SUBTLE_DEFECT_TYPES,
    DefectEvent,
)
from am_qadf.simulation.pacing import Pacer
from am_qadf.simulation.process_model import ProcessModel
from am_qadf.simulation.replay import FileReplay, write_recording
from am_qadf.simulation.scan_path import DEFAULT_PARTS, Part, ScanStrategy

__all__ = [
    "ALL_DEFECT_TYPES",
    "DEFAULT_PARTS",
    "DEFECT_TYPES",
    "DROPOUT_MODES",
    "MESSAGE_FIELDS",
    "SIGNALS",
    "SUBTLE_DEFECT_TYPES",
    "BuildSimulator",
    "DefectEvent",
    "FileReplay",
    "Pacer",
    "Part",
    "ProcessModel",
    "ScanStrategy",
    "write_recording",
]
