"""Machine profiles: parsing, the shipped profiles, and every validation error."""

from __future__ import annotations

from pathlib import Path

import pytest

from am_qadf.machine_profile import SPC_KINDS, MachineProfile, ProfileError, SignalSpec
from am_qadf.monitoring.control_charts import CHART_KINDS

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "profiles"


def _base() -> dict:
    return {
        "machine": {"id": "m1", "plate_mm": [100.0, 100.0, 50.0], "voxel_mm": 1.0},
        "fields": {"time": "ts", "time_unit": "ms", "x": "px", "y": "py", "z": "pz", "layer": "L"},
        "signals": {"temp": {"field": "T", "low": 1.0, "high": 2.0, "spc": "imr"}},
    }


def test_shipped_simulator_file_is_the_built_in_default() -> None:
    p = MachineProfile.load(ASSETS / "simulator.toml")
    d = MachineProfile.default()
    assert (p.machine, p.fields, p.signals) == (d.machine, d.fields, d.signals)
    assert d.is_identity and d.source == "<built-in simulator>"
    assert d.spc_signals == ("temperature", "melt_pool_area", "intensity")
    assert d.signal("temperature").options == {
        "lam": 0.003,
        "L": 4.5,
        "sigma_method": "ar",
        "recenter_points": 500,
        "residual_L": 5.0,
        "variance_L": 6.0,
    }


def test_example_machine_profile_parses_with_its_own_shape() -> None:
    p = MachineProfile.load(ASSETS / "eos-m290-example.toml")
    assert not p.is_identity
    assert p.fields.time_unit == "ms" and p.fields.z is None
    t = p.signal("temperature")
    assert (t.field, t.offset, t.unit) == ("mp_temp_C", 273.15, "K")
    assert p.signal("photodiode").scale == 0.001
    assert p.limits()["temperature"] == {"low": 1900.0, "high": 2700.0}


def test_spc_kinds_are_the_chart_kinds_plus_none() -> None:
    assert set(SPC_KINDS) == set(CHART_KINDS) | {"none"}


def test_defaults_and_readers() -> None:
    p = MachineProfile.from_dict(
        {"machine": {"id": "m"}, "signals": {"a_b": {}, "c": {"field": "C", "live": False}}}
    )
    assert p.fields.time == "timestamp" and p.fields.z == "z"
    assert p.signal("a_b").label == "A b" and p.signal("a_b").field == "a_b"
    assert p.live_signals == ("a_b",)
    assert p.info("other").label == "Other"
    with pytest.raises(KeyError, match="not in profile"):
        p.signal("other")
    assert p.plate_bounds == ((0.0, 0.0, 0.0), (250.0, 250.0, 300.0))


def test_from_env_and_resolve(tmp_path: Path) -> None:
    f = tmp_path / "m.toml"
    f.write_text('[machine]\nid = "env-1"\n')
    assert MachineProfile.from_env({"AMQADF_PROFILE": str(f)}).machine.id == "env-1"
    assert MachineProfile.from_env({"AMQADF_PROFILE": ""}) is MachineProfile.default()
    assert MachineProfile.resolve(str(f)).source == str(f)
    with pytest.raises(TypeError, match="MachineProfile, a path or None"):
        MachineProfile.resolve(3)  # type: ignore[arg-type]


def test_signal_spec_formats() -> None:
    s = SignalSpec("a", "a", "Area", "mm²", digits=-3)
    assert s.fmt(0.012345) == "0.0123" and s.fmt(None) == "–" and s.fmt(float("nan")) == "–"
    assert s.title == "Area (mm²)"


def _mutate(path: str, value: object) -> dict:
    d = _base()
    *parents, last = path.split(".")
    node = d
    for k in parents:
        node = node.setdefault(k, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return d


_DELETE = object()

BAD = [
    # (path to set, value, expected key in the error, words of the reason)
    ("colour", 1, "colour", "unknown key"),
    ("machine.colour", "red", "machine.colour", "unknown key"),
    ("fields.t", "x", "fields.t", "unknown key"),
    ("signals.temp.lo", 1.0, "signals.temp.lo", "unknown key"),
    ("machine.id", _DELETE, "machine.id", "is required"),
    ("machine.id", "", "machine.id", "must not be empty"),
    ("machine.id", 7, "machine.id", "must be text"),
    ("machine.plate_mm", [1.0, 2.0], "machine.plate_mm", "[x, y, z]"),
    ("machine.plate_mm", [1.0, -2.0, 3.0], "machine.plate_mm[1]", "> 0"),
    ("machine.plate_mm", [1.0, "a", 3.0], "machine.plate_mm[1]", "must be a number"),
    ("machine.voxel_mm", 0, "machine.voxel_mm", "> 0"),
    ("machine.voxel_mm", float("nan"), "machine.voxel_mm", "finite"),
    ("machine.sample_rate_hz", True, "machine.sample_rate_hz", "must be a number"),
    ("fields.time_unit", "h", "fields.time_unit", "one of iso, s, ms, us, ns"),
    ("fields.x", 3, "fields.x", "must be text"),
    ("fields.layer_thickness_mm", -0.04, "fields.layer_thickness_mm", "> 0"),
    ("fields.y", "px", "fields.y", "already used by fields.x"),
    ("signals.temp.field", "px", "signals.temp.field", "already used by fields.x"),
    ("signals.temp.low", 3.0, "signals.temp.low", "must be below high"),
    ("signals.temp.high", "2", "signals.temp.high", "must be a number"),
    ("signals.temp.spc", "shewhart", "signals.temp.spc", "must be one of"),
    ("signals.temp.spc_options", 3, "signals.temp.spc_options", "must be a table"),
    ("signals.temp.spc_options", {"lam": {"a": 1}}, "signals.temp.spc_options.lam", "number"),
    ("signals.temp.scale", 0, "signals.temp.scale", "must not be 0"),
    ("signals.temp.range", [5.0, 1.0], "signals.temp.range", "must be below"),
    ("signals.temp.range", [5.0], "signals.temp.range", "[lo, hi]"),
    ("signals.temp.digits", 1.5, "signals.temp.digits", "integer"),
    ("signals.temp.color", "red", "signals.temp.color", "#rrggbb"),
    ("signals.temp.live", "yes", "signals.temp.live", "true or false"),
    ("signals.temp.max_change", 0.0, "signals.temp.max_change", "> 0"),
    ("signals.temp", "T", "signals.temp", "must be a table"),
    ("signals.x", {}, "signals.x", "reserved"),
    ("signals.bad-name", {}, "signals.bad-name", "letters, digits and _"),
    ("signals", [], "signals", "must be a table"),
    ("fields", "ts", "fields", "must be a table"),
]


@pytest.mark.parametrize(
    ("path", "value", "key", "reason"), BAD, ids=[b[2] + ":" + b[3] for b in BAD]
)
def test_every_validation_error_names_key_and_reason(
    path: str, value: object, key: str, reason: str
) -> None:
    with pytest.raises(ProfileError) as err:
        MachineProfile.from_dict(_mutate(path, value), source="bad.toml")
    assert err.value.source == "bad.toml"
    assert err.value.key == key
    assert reason in err.value.reason
    assert str(err.value).startswith(f"bad.toml: {key}: ")


def test_missing_machine_table() -> None:
    with pytest.raises(ProfileError, match="machine: is required"):
        MachineProfile.from_dict({"signals": {}})


def test_options_without_a_chart() -> None:
    d = _base()
    d["signals"]["temp"].update(spc="none", spc_options={"lam": 0.1})
    with pytest.raises(ProfileError, match='spc = "none"'):
        MachineProfile.from_dict(d)


def test_no_z_needs_layer_thickness() -> None:
    d = _base()
    del d["fields"]["z"]
    assert MachineProfile.from_dict(d).fields.z == "z"  # default name
    d["fields"]["layer_thickness_mm"] = 0.03
    assert MachineProfile.from_dict(d).fields.z is None
    d["fields"]["z"] = None  # not TOML, but a dict user could try
    with pytest.raises(ProfileError, match="fields.z: must be text"):
        MachineProfile.from_dict(d)


def test_signal_name_that_is_another_signals_raw_field() -> None:
    d = _base()
    d["signals"]["other"] = {"field": "temp"}
    with pytest.raises(ProfileError, match="signals.temp: the name 'temp' is the raw field"):
        MachineProfile.from_dict(d)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ProfileError, match="nope.toml: cannot read the profile"):
        MachineProfile.load(missing)
    dup = tmp_path / "dup.toml"
    dup.write_text('[machine]\nid = "a"\nid = "b"\n')
    with pytest.raises(ProfileError, match="dup.toml: not valid TOML"):
        MachineProfile.load(dup)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ProfileError, match="bin.toml: not UTF-8"):
        MachineProfile.load(binary)
    bad = tmp_path / "bad.toml"
    bad.write_text('[machine]\nid = "a"\n[fields]\ntime_unit = "h"\n')
    with pytest.raises(ProfileError, match=r"bad.toml: fields.time_unit: must be one of"):
        MachineProfile.load(bad)
    with pytest.raises(ProfileError, match="AMQADF_PROFILE|nope.toml"):
        MachineProfile.from_env({"AMQADF_PROFILE": str(missing)})


def test_replace_gives_a_profile_of_its_own() -> None:
    import dataclasses

    p = MachineProfile.default()
    q = dataclasses.replace(p, signals=p.signals[:1])
    assert q.signal_names == ("temperature",)
    with pytest.raises(KeyError):
        q.signal("power")
    assert p.signal("power").unit == "W"  # the original is untouched
