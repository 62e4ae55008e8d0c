"""Check that a change left detection outputs as they were: same alerts, same results.

Feeds a seeded simulated stream through ``default_processors()`` on this tree and on
a git revision (exported to a temporary directory) and compares, batch by batch, the
quality, SPC and alert results and every alert (its id's session part aside). The
stream goes through as message dicts in two processor orders, as messy messages
(missing layers, None, strings, booleans and huge ints in signal fields) and as numpy
columns. Meant for speed-ups and refactors; a change to the detection itself is
expected to differ.

    python bench/compare_detection_outputs.py [--ref main] [--points 300000] [--seed 11]

Exit status 0 when identical, 1 when anything differs (the first differences printed).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import pickle
import random
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_SESSION = re.compile(r"alert-[0-9a-f]{8}-")  # alert ids carry a random session part


def _plain(obj: Any) -> Any:
    """JSON-comparable form: alert ids without their session, ``raised_at`` dropped."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return json.loads(_SESSION.sub("alert-S-", text))


def _messy(batch: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    for m in batch:
        r = rng.random()
        if r < 0.002:
            m.pop("layer", None)
        elif r < 0.003:
            m["temperature"] = None
        elif r < 0.004:
            m["intensity"] = "n/a"
        elif r < 0.0045:
            m["melt_pool_area"] = True
        elif r < 0.005:
            m["power"] = 2**70
    return batch


def dump(points: int, seed: int) -> dict[str, Any]:
    """Digest of every batch's results and the alerts, per way of feeding the stream."""
    from am_qadf.monitoring.processors import default_processors
    from am_qadf.simulation import BuildSimulator

    def simulator() -> BuildSimulator:
        return BuildSimulator(
            seed=seed, n_points=points, n_defects=max(5, round(24 * points / 1e6))
        )

    out: dict[str, Any] = {}
    for way, order in (("messages", "qsa"), ("alerts first", "asq"), ("messy", "qsa")):
        sim = simulator()
        procs = default_processors(sample_rate_hz=sim.sensor_rate_hz)
        run = {"q": procs["quality_processor"], "s": procs["spc_processor"]}
        run["a"] = procs["alert_processor"]
        digest, alerts, rng = hashlib.sha256(), [], random.Random(seed)
        for batch in sim.iter_batches(batch_size=1000):
            if way == "messy":
                batch = _messy(batch, rng)
            res = {k: run[k](batch) for k in order}
            alerts += res["a"].pop("alerts")
            res["a"].pop("alert_ids")
            digest.update(json.dumps(_plain(res), sort_keys=True).encode())
        for a in alerts:
            a.pop("raised_at", None)
        out[way] = {"results": digest.hexdigest(), "alerts": _plain(alerts)}
    sim = simulator()
    procs = default_processors(sample_rate_hz=sim.sensor_rate_hz)
    spc, alert = procs["spc_processor"], procs["alert_processor"]
    digest, alerts = hashlib.sha256(), []
    for cols in sim.iter_arrays(chunk_size=1000):
        res = {"s": spc.process_arrays(cols), "a": dict(alert.process_arrays(cols))}
        alerts += res["a"].pop("alerts")
        res["a"].pop("alert_ids")
        digest.update(json.dumps(_plain(res), sort_keys=True).encode())
    for a in alerts:
        a.pop("raised_at", None)
    out["arrays"] = {"results": digest.hexdigest(), "alerts": _plain(alerts)}
    return out


def _export(ref: str, into: Path) -> None:
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(into, filter="data")


def _run(tree: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--dump", str(out), "--tree", str(tree)]
    cmd += ["--points", str(args.points), "--seed", str(args.seed)]
    subprocess.run(cmd, check=True)
    with out.open("rb") as f:
        return pickle.load(f)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="main", help="git revision to compare with")
    ap.add_argument("--points", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.dump is not None:  # a child run: this tree's outputs into a file
        sys.path.insert(0, str(args.tree))
        import am_qadf

        here = Path(am_qadf.__file__).resolve()
        assert here.is_relative_to(args.tree.resolve()), f"imported {here}, not {args.tree}"
        with args.dump.open("wb") as f:
            pickle.dump(dump(args.points, args.seed), f)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "ref"
        _export(args.ref, old_tree)
        old = _run(old_tree, args, Path(tmp) / "old.pkl")
        new = _run(ROOT, args, Path(tmp) / "new.pkl")
    same = True
    for way in old:
        diff = [part for part in ("results", "alerts") if old[way][part] != new[way][part]]
        a, b = old[way]["alerts"], new[way]["alerts"]
        print(f"{way}: {len(b)} alerts here, {len(a)} at {args.ref}; ", end="")
        print(f"different: {', '.join(diff)}" if diff else "identical")
        first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        if first is not None:
            x, y = a[first], b[first]
            keys = [k for k in ("metric", "rule", "index", "value", "severity") if x[k] != y[k]]
            keys = keys or [k for k in x if x[k] != y.get(k)]
            changed = ", ".join(f"{k} {x[k]!r} -> {y.get(k)!r}" for k in keys)
            print(f"  first different alert, #{first}, {args.ref} -> here: {changed}")
        same = same and not diff
    print(
        "IDENTICAL" if same else "DIFFERENT", f"(this tree vs {args.ref}, {args.points:,} points)"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
