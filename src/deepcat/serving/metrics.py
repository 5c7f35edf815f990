"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from deepcat.inference.monitor import Monitor

__all__ = ["Metrics"]


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "deepcat_requests_total", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "deepcat_request_seconds",
            "request latency",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.batch_size = Histogram(
            "deepcat_batch_size",
            "images per inference call",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.errors = Counter("deepcat_errors_total", "client errors by kind", ["kind"], registry=self.registry)

    def watch(self, monitor: Monitor) -> None:
        """Export the monitor's statistics, computed at each scrape."""
        self.registry.register(MonitorGauges(monitor))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MonitorGauges(Collector):
    """The monitor's report as gauges (a missing value, such as the p-value before the window fills: no sample)."""

    def __init__(self, monitor: Monitor):
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self.monitor.report()
        values = {
            "deepcat_monitor_answers": ("answers in the window", report["answers"]),
            "deepcat_monitor_confidence": ("mean calibrated top-1 probability", report["confidence"]["mean"]),
            "deepcat_monitor_unknown_share": ("share answered unknown", report["unknown_share"]["now"]),
            "deepcat_monitor_set_size": ("mean 90% prediction-set size", report["set_size"]["mean"]),
            "deepcat_monitor_drift_p_value": ("drift test's corrected p-value", report["drift"]["p_value"]),
            "deepcat_monitor_estimated_accuracy": ("accuracy estimated without labels", report["accuracy"]["estimate"]),
            "deepcat_monitor_alarm": ("1 while the monitor alarms", float(report["alarm"])),
        }
        measured = report["accuracy"]["measured"]
        values["deepcat_monitor_measured_accuracy"] = ("accuracy on labels sent back", measured and measured["value"])
        for name, (help, value) in values.items():
            gauge = GaugeMetricFamily(name, help)
            if value is not None:
                gauge.add_metric([], float(value))
            yield gauge
        shares = GaugeMetricFamily("deepcat_monitor_class_share", "share of answers per class", labels=["class"])
        for label, share in report["classes"].items():
            shares.add_metric([label], share)
        yield shares
