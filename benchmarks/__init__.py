"""Benchmarks (not timed tests): run with ``make bench`` or ``python -m benchmarks [NAME ...]``.

Each ``benchmarks/bench_<name>.py`` exposes ``main(argv: list[str] | None = None) -> int`` and
records its results (machine, versions, medians, ratios measured in one run) with
:func:`benchmarks._common.record`.
"""
