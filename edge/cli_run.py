"""Placeholder until its owner fills it."""


def register(main, bench) -> None:
    pass
