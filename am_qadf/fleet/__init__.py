"""The fleet: many machines, workers in a Kafka consumer group, derived state for dashboards.

* :mod:`~am_qadf.fleet.state_store` — per-machine derived state (in-process or Redis)
* :mod:`~am_qadf.fleet.commands` — operator commands and their role checks
* :mod:`~am_qadf.fleet.machine_pipeline` — one machine's pipeline inside a worker
* :mod:`~am_qadf.fleet.worker` — the worker: consume, route by machine, publish state
* :mod:`~am_qadf.fleet.worker_metrics` — Prometheus metrics of a worker
* :mod:`~am_qadf.fleet.monitor_publisher` — the embedded monitor's machine in a state store
* :mod:`~am_qadf.fleet.fleet_reader` — a dashboard's cached, worst-first view of the fleet
* :mod:`~am_qadf.fleet.fleet_simulation` — several simulated machines on one topic
* :mod:`~am_qadf.fleet.run` — ``am-qadf worker`` and ``am-qadf simulate --machines``
"""
