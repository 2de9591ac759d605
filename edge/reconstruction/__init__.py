"""Reconstruction: the methods and their windows, the classical maths, the networks (``models/``),
the backends that run them (``backends/``) and engine directories (``engines``). No sockets, no processes.
"""
