"""Scrapes a metrics URL and parses it with the Prometheus project's own
Python parser (prometheus_client's OpenMetrics parser, which also checks
the format: families, suffixes, histogram buckets, the closing # EOF), for
tests/it/front_metrics.rs.

Usage: parse_metrics.py URL

Prints one JSON object: {"content_type": ..., "families": {name: type},
"samples": [[name, labels, value], ...]} and exits 0, or exits 1 with the
parser's complaint.
"""

import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main(url):
    with urllib.request.urlopen(url, timeout=20) as resp:
        content_type = resp.headers.get("Content-Type")
        text = resp.read().decode()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser's own exceptions are ValueErrors
        print(f"parse error: {e}\n{text}", file=sys.stderr)
        return 1
    out = {
        "content_type": content_type,
        "families": {f.name: f.type for f in families},
        "samples": [[s.name, s.labels, s.value] for f in families for s in f.samples],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
