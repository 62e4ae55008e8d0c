"""The behaviour every StateStore backend must have; run against each backend by
subclassing :class:`StateStoreContract` and providing the ``store`` fixture."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from am_qadf.fleet.state_store import MachineSnapshot, StateStore


class StateStoreContract:
    """Tests shared by the in-process and the Redis state store."""

    def test_snapshot_round_trip_and_machine_list(self, store: StateStore) -> None:
        assert store.snapshot("m1") is None
        s = MachineSnapshot(
            "m1",
            name="EOS 1",
            state="running",
            layer=7,
            progress=0.25,
            alerts_active={"critical": 2},
            problems=("field x missing",),
            updated_at=1.5,
        )
        store.put_snapshot(s)
        store.put_snapshot(MachineSnapshot("m0"))
        assert store.snapshot("m1") == s
        assert store.machines() == ["m0", "m1"]
        assert set(store.snapshots()) == {"m0", "m1"}

    def test_snapshot_is_replaced_not_merged(self, store: StateStore) -> None:
        store.put_snapshot(MachineSnapshot("m1", layer=3, newest_alert={"id": "a"}))
        store.put_snapshot(MachineSnapshot("m1", layer=4))
        got = store.snapshot("m1")
        assert got.layer == 4 and got.newest_alert is None

    def test_bad_machine_id_is_refused_before_writing(self, store: StateStore) -> None:
        with pytest.raises(ValueError, match="machine id"):
            store.put_snapshot(MachineSnapshot("m1:*/../x y"))
        with pytest.raises(ValueError, match="machine id"):
            store.send_command("", {"action": "pause"})
        assert store.machines() == []

    def test_alert_stream_is_bounded_and_ordered(self, store: StateStore) -> None:
        n = store.max_alerts + 5
        store.add_alerts("m1", [{"id": f"a{i}", "event": "raised"} for i in range(n)])
        got = store.alerts("m1", count=n)
        assert len(got) == store.max_alerts
        assert got[0]["id"] == "a5" and got[-1]["id"] == f"a{n - 1}"
        assert [a["id"] for a in store.alerts("m1", count=2)] == [f"a{n - 2}", f"a{n - 1}"]

    def test_alerts_since_reads_only_what_is_new(self, store: StateStore) -> None:
        """A reader that keeps the newest ``max_alerts`` events it was given has what
        ``alerts`` returns, and a read after its cursor brings only the new events."""
        cur, events, full = store.alerts_since("m1")
        assert events == [] and full
        store.add_alerts("m1", [{"id": f"a{i}", "event": "raised"} for i in range(3)])
        cur, events, full = store.alerts_since("m1", cur)
        assert [e["id"] for e in events] == ["a0", "a1", "a2"] and not full
        assert store.alerts_since("m1", cur) == (cur, [], False)
        kept = [e["id"] for e in events]
        for i in range(3, store.max_alerts + 8, 4):  # readers reading between writes
            store.add_alerts("m1", [{"id": f"a{j}", "event": "raised"} for j in range(i, i + 4)])
            cur, events, full = store.alerts_since("m1", cur)
            assert not full and [e["id"] for e in events] == [f"a{j}" for j in range(i, i + 4)]
            kept = (kept + [e["id"] for e in events])[-store.max_alerts :]
        assert kept == [e["id"] for e in store.alerts("m1", count=store.max_alerts)]
        store.clear()  # the stream starts again (an emptied store): a reader starts over
        store.add_alerts("m1", [{"id": "b0", "event": "raised"}])
        _, events, full = store.alerts_since("m1", cur)
        assert full and [e["id"] for e in events] == ["b0"]

    def test_spc_and_windows(self, store: StateStore) -> None:
        store.put_spc("m1", {"temperature": {"center": 1900.0, "violations": []}})
        assert store.spc("m1")["temperature"]["center"] == 1900.0
        assert store.spc("m2") == {}
        t = np.arange(10_000) / 1000.0
        v = np.sin(t)
        v[5000] = 50.0  # a spike must survive downsampling
        store.put_windows("m1", {"temperature": (t, v)})
        wt, wv = store.windows("m1")["temperature"]
        assert len(wv) <= store.window_points and wv.max() == 50.0
        assert np.all(np.diff(wt) > 0)

    def test_brick_deltas_cursor_and_redraw_after_trim(self, store: StateStore) -> None:
        cur, b, full = store.bricks_since("m1")
        assert full and len(b) == 0
        store.add_bricks("m1", np.array([[1, 2, 3]]))
        store.add_bricks("m1", np.array([[1, 2, 3], [4, 5, 6]]))
        cur, b, full = store.bricks_since("m1", cur)
        assert not full and b.tolist() == [[1, 2, 3], [4, 5, 6]]
        cur2, b, full = store.bricks_since("m1", cur)
        assert cur2 == cur and len(b) == 0 and not full
        for i in range(store.max_deltas + 3):  # the reader falls behind what is kept
            store.add_bricks("m1", np.array([[i, 0, 0]]))
        _, b, full = store.bricks_since("m1", cur)
        assert full and len(b) == store.max_deltas

    def test_brick_deltas_carry_voxel_values_newest_wins(self, store: StateStore) -> None:
        cur, ijk, values, full = store.voxels_since("m1")
        assert full and len(ijk) == 0
        store.add_bricks(
            "m1", np.array([[0, 0, 0]]), (np.array([[1, 2, 3], [4, 5, 6]]), [1.0, 2.0])
        )
        store.add_bricks("m1", np.array([[9, 9, 9]]))  # bricks only: nothing to merge
        store.add_bricks("m1", np.array([[0, 0, 0]]), (np.array([[1, 2, 3]]), [7.5]))
        cur2, ijk, values, full = store.voxels_since("m1", cur)
        assert not full
        assert ijk.tolist() == [[1, 2, 3], [4, 5, 6]] and values.tolist() == [7.5, 2.0]
        _, bricks, _ = store.bricks_since("m1", cur)
        assert bricks.tolist() == [[0, 0, 0], [9, 9, 9]]
        assert store.voxels_since("m1", cur2)[1].size == 0
        with pytest.raises(ValueError, match="2 voxels but 1 values"):
            store.add_bricks("m1", np.array([[0, 0, 0]]), (np.zeros((2, 3)), [1.0]))

    def test_commands_are_read_after_cursor(self, store: StateStore) -> None:
        c1 = store.send_command("m1", {"action": "pause"})
        store.send_command("m2", {"action": "resume"})
        c3 = store.send_command("m1", {"action": "resume"})
        got = store.read_commands({"m1": "0", "m2": "0"})
        assert sorted((m, c["action"]) for m, _, c in got) == [
            ("m1", "pause"),
            ("m1", "resume"),
            ("m2", "resume"),
        ]
        assert [sid for _, sid, _ in store.read_commands({"m1": c1})] == [c3]
        assert store.read_commands({"m1": c3}) == []

    def test_command_stream_is_bounded(self, store: StateStore) -> None:
        for i in range(store.max_commands + 10):
            store.send_command("m1", {"action": "pause", "n": i})
        got = store.read_commands({"m1": "0"}, count=1000)
        assert len(got) == store.max_commands and got[-1][2]["n"] == store.max_commands + 9

    def test_wait_wakes_on_a_change_and_names_the_machine(self, store: StateStore) -> None:
        cursor = store.change_cursor()
        assert store.wait(cursor, timeout=0.0) == (cursor, set())
        writer = threading.Thread(target=store.put_snapshot, args=(MachineSnapshot("m9"),))
        writer.start()
        new, changed = store.wait(cursor, timeout=30.0)
        writer.join()
        assert new != cursor and changed == {"m9"}

    def test_clear_removes_everything_of_the_prefix(self, store: StateStore) -> None:
        store.put_snapshot(MachineSnapshot("m1"))
        store.add_bricks("m1", np.array([[0, 0, 0]]))
        store.clear()
        assert store.machines() == [] and store.snapshot("m1") is None

    def test_view_and_its_parts(self, store: StateStore) -> None:
        assert store.view("m1") == {}
        store.put_view_part("m1", "violations", {"ewma": [{"rule": 1}]})
        store.put_view("m1", {"layers": [[0, 1, 3]], "grid": {"dims": [4, 4, 2]}})
        store.put_view("m1", {"layers": [[0, 1, 4]]})  # replaced; the part stays
        assert store.view("m1") == {"layers": [[0, 1, 4]], "violations": {"ewma": [{"rule": 1}]}}
        with pytest.raises(ValueError, match="needs a name"):
            store.put_view_part("m1", "", 1)

    def test_spc_series_are_cut_and_round_trip(self, store: StateStore) -> None:
        n = store.window_points * 5
        rows = np.column_stack([np.sin(np.arange(n) / 50.0), np.full(n, 7.0), np.arange(n)])
        rows[1234, 0] = 40.0  # a peak survives the cut
        us = 1_700_000_000_000_000 + np.arange(n) * 1000
        store.put_spc_series(
            "m1", {("ewma", "temperature"): (rows, us), ("imr", "x"): (rows[:5], us[:5])}
        )
        got, t = store.spc_series("m1", "ewma", "temperature")
        assert len(t) <= store.window_points and got.shape == (len(t), 3)
        assert np.all(np.diff(t) > 0) and 40.0 in got[:, 0] and set(got[:, 1]) == {7.0}
        got, t = store.spc_series("m1", "imr", "x")
        np.testing.assert_allclose(got, rows[:5], rtol=1e-6)
        assert t.tolist() == us[:5].tolist()
        assert store.spc_series("m1", "cusum", "x")[0].shape == (0, 3)

    def test_voxel_state_with_the_deltas_after_it(self, store: StateStore) -> None:
        assert store.voxels("m1")[0] is None
        store.add_bricks("m1", np.array([[0, 0, 0]]), (np.array([[1, 1, 1]]), np.array([1.0])))
        store.put_voxels("m1", np.array([[1, 1, 1], [2, 2, 2]]), np.array([1.0, 2.0]))
        store.add_bricks("m1", np.array([[0, 0, 0]]), (np.array([[2, 2, 2]]), np.array([5.0])))
        cursor, ijk, values = store.voxels("m1")
        assert ijk.tolist() == [[1, 1, 1], [2, 2, 2]] and values.tolist() == [1.0, 2.0]
        _, later, later_values, full = store.voxels_since("m1", cursor)
        assert not full and later.tolist() == [[2, 2, 2]] and later_values.tolist() == [5.0]
        with pytest.raises(ValueError, match="2 voxels but 1 values"):
            store.put_voxels("m1", np.zeros((2, 3)), np.zeros(1))
