"""``spike-edge bench ...``: the benchmarks, each printing what it measured.
"""
