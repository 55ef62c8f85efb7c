"""zigziik's benchmarks: the library next to hand-written httpx, aiohttp and pydantic code.

Run them with ``nox -s bench`` or ``python -m benchmarks [--quick] [--only NAME]``; see
``benchmarks/__main__.py`` for the options and ``benchmarks/results.json`` for the last run.
Every measure runs its contenders against the same local server in the same process run,
alternating (A B A B ...) for several rounds, and reports medians and ratios.
"""
