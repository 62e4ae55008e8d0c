"""Statistical process control, run rules, thresholds and alerts for streamed L-PBF data.

>>> from am_qadf.monitoring import default_processors
>>> procs = default_processors()
>>> out = procs["alert_processor"]([{"temperature": 2600.0, "layer": 4}])
>>> [a["rule"] for a in out["alerts"]]
['threshold_high']
"""

from am_qadf.monitoring.alerts import SEVERITIES, STATES, Alert, AlertManager
from am_qadf.monitoring.batch_view import ArrayBatchView, BatchView, ColumnCache, MessageBatchView
from am_qadf.monitoring.chart_constants import ChartConstants, c4, chart_constants, d2, d3
from am_qadf.monitoring.control_charts import (
    CHART_KINDS,
    ChartUpdate,
    ControlChart,
    CUSUMChart,
    EWMAChart,
    IMRChart,
    XbarRChart,
    XbarSChart,
    make_chart,
    process_capability,
)
from am_qadf.monitoring.processors import (
    DEFAULT_LIMITS,
    DEFAULT_RANGES,
    DEFAULT_SIGNALS,
    SPC_SIGNALS,
    AlertProcessor,
    QualityProcessor,
    SPCProcessor,
    default_processors,
    default_threshold_rules,
)
from am_qadf.monitoring.quality import quality_metrics
from am_qadf.monitoring.rules import (
    RULE_DESCRIPTIONS,
    RULE_NAMES,
    NelsonRules,
    Violation,
    check_rules,
)
from am_qadf.monitoring.thresholds import (
    AlertRule,
    Candidate,
    GapRule,
    MissingDataRule,
    RateOfChangeRule,
    ThresholdRule,
)

__all__ = [
    "CHART_KINDS",
    "DEFAULT_LIMITS",
    "DEFAULT_RANGES",
    "DEFAULT_SIGNALS",
    "RULE_DESCRIPTIONS",
    "RULE_NAMES",
    "SEVERITIES",
    "SPC_SIGNALS",
    "STATES",
    "Alert",
    "AlertManager",
    "AlertProcessor",
    "AlertRule",
    "ArrayBatchView",
    "BatchView",
    "CUSUMChart",
    "Candidate",
    "ChartConstants",
    "ChartUpdate",
    "ColumnCache",
    "ControlChart",
    "EWMAChart",
    "GapRule",
    "IMRChart",
    "MessageBatchView",
    "MissingDataRule",
    "NelsonRules",
    "QualityProcessor",
    "RateOfChangeRule",
    "SPCProcessor",
    "ThresholdRule",
    "Violation",
    "XbarRChart",
    "XbarSChart",
    "c4",
    "chart_constants",
    "check_rules",
    "d2",
    "d3",
    "default_processors",
    "default_threshold_rules",
    "make_chart",
    "process_capability",
    "quality_metrics",
]
