"""``spike-edge models``: the reconstruction methods, their windows, parameter counts and weights."""

from __future__ import annotations

import json

import click

from edge.reconstruction.methods import METHOD_SPECS, Method


def _parameter_count(method: Method) -> int:
    if not METHOD_SPECS[method].learned:
        return 0
    from edge.reconstruction.networks import build_network

    return sum(p.numel() for p in build_network(method).parameters())


def models_table() -> list[dict]:
    from edge.reconstruction.networks import has_default_weights

    rows = []
    for method, spec in METHOD_SPECS.items():
        rows.append({
            "name": method.value,
            "window_planes": spec.window_planes,
            "parameters": _parameter_count(method),
            "learned": spec.learned,
            "default_weights": has_default_weights(method) if spec.learned else None,
            "summary": spec.summary,
        })
    return rows


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json: bool) -> None:
    """List the reconstruction methods: window, parameters, learned, default weights."""
    rows = models_table()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        weights = "-" if r["default_weights"] is None else ("yes" if r["default_weights"] else "no (needs --checkpoint)")
        click.echo(f"{r['name']:5} window {r['window_planes']:4}  params {r['parameters']:>9,}  "
                   f"learned {str(r['learned']):5}  default weights {weights}")
