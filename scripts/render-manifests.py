#!/usr/bin/env python3
"""Renders the seeds' raw Kubernetes manifests from the Helm chart, by the seeds' file names.

  .venv/bin/python scripts/render-manifests.py          # write deploy/kubernetes/*.yaml
  .venv/bin/python scripts/render-manifests.py --check  # exit 1 if anything is out of date

It first copies the canonical monitoring files into the chart (charts/caracal/files/), since a
chart can read only its own files, then renders the chart with its default values (release
`caracal`, namespace `caracal`) with Helm's own engine (PyPI helm-python-sdk) and writes one
file per template: configmap.yaml, secret.yaml, gateway-deployment.yaml, ... The chart is the
source; these files are for `kubectl apply -f` users and must never be edited by hand.
"""
import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "caracal"
OUT = ROOT / "deploy" / "kubernetes"
HEADER = (
    "# Rendered from charts/caracal (default values, release and namespace `caracal`) by\n"
    "# scripts/render-manifests.py. Do not edit: change the chart and run the script again.\n"
)


def monitoring_copies():
    """{path in the chart: content} of the monitoring files the chart ships."""
    files = {CHART / "files" / "caracal-alerts.yaml":
             (ROOT / "monitoring" / "prometheus" / "caracal-alerts.yaml").read_text()}
    for board in sorted((ROOT / "monitoring" / "grafana").glob("*.json")):
        files[CHART / "files" / "grafana" / board.name] = board.read_text()
    return files


def manifests():
    """{path under deploy/kubernetes: content} rendered from the chart."""
    from helm_python import Chart

    chart = Chart.load(str(CHART))
    try:
        rendered = chart.render({}, name="caracal", namespace="caracal", is_install=True)
    finally:
        chart.close()
    files = {}
    for template, text in sorted(rendered.items()):
        name = pathlib.PurePosixPath(template).name
        if not name.endswith(".yaml") or not text.strip():
            continue
        files[OUT / name] = HEADER + text.lstrip("\n").rstrip() + "\n"
    return files


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args()
    stale = []
    # The copies first: the rendered dashboards ConfigMap and PrometheusRule read them.
    for group in (monitoring_copies, manifests):
        wanted = group()
        if group is manifests:
            existing = set(OUT.glob("*.yaml"))
            for extra in sorted(existing - set(wanted)):
                stale.append(f"{extra.relative_to(ROOT)} (no template renders it)")
                if not args.check:
                    extra.unlink()
        for path, text in wanted.items():
            if path.exists() and path.read_text() == text:
                continue
            stale.append(str(path.relative_to(ROOT)))
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if args.check and stale:
        print("out of date (run scripts/render-manifests.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    print(("up to date" if args.check else "written") + f" ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
