"""Reads Prometheus text exposition on stdin with prometheus_client's own
parser, and writes its metric families as JSON on stdout:
[{"name", "type", "samples": [{"name", "labels", "value"}]}].
Exits non-zero, with the parser's error on stderr, when the text does not
parse. For tests/metrics.rs."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    families = [
        {
            "name": family.name,
            "type": family.type,
            "samples": [
                {"name": s.name, "labels": s.labels, "value": s.value}
                for s in family.samples
            ],
        }
        for family in text_string_to_metric_families(sys.stdin.read())
    ]
    json.dump(families, sys.stdout)


if __name__ == "__main__":
    main()
