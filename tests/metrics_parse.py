"""Reads a /metrics page (OpenMetrics text) on stdin with the Prometheus project's own Python
parser and prints its samples as JSON lines: {"name", "labels", "value"}. A page the parser
refuses makes it exit non-zero with the parser's error."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        print(json.dumps({"name": sample.name, "labels": sample.labels, "value": sample.value}))
