"""migrestore's benchmarks: whole-process wall time, driver calls and memory against their floors.

Not part of the pass/fail tests: `./dev/bench` (or `python -m bench.run`) prints the table.
"""
