"""Placeholder until its owner fills it."""


def register(main) -> None:
    pass
