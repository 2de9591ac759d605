"""Reconstruction: the methods and their windows, the classical maths, the networks (``models/``),
the backends that run them (``backends/``) and engine directories (``engines``). No sockets, no processes.

The layers, bottom up (each imports only those before it): ``windows``, ``classical``, ``inputs`` and
``torch_unpack`` (network input preparation); ``models`` (the torch networks, checkpoint reading);
``methods`` (the one method table); ``networks`` (a method's network with its weights); ``engines``
(engine directories and their manifests); ``backends`` (the one backend registry, ``make_reconstructor``);
``reference`` (the strict fp32 reference and the agreement measures the GPU tests and benches share).
"""
