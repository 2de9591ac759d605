"""Placeholder until its owner fills it."""

import click


@click.group()
def main() -> None:
    """spike-host: watch, record and measure a spike-edge stream."""
