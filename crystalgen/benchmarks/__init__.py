"""End-to-end benchmarks: sample from a model, score with :mod:`crystalgen.metrics`, write a report.

* :mod:`~crystalgen.benchmarks.csp`: ``crystalgen benchmark csp`` (crystal structure prediction);
* :mod:`~crystalgen.benchmarks.gen`: ``crystalgen benchmark gen`` (generation from scratch);
* :mod:`~crystalgen.runs`: the resumable output folder both use.
"""

from crystalgen.benchmarks.csp import CspBenchmarkSettings, run_csp_benchmark
from crystalgen.benchmarks.gen import GenBenchmarkSettings, run_gen_benchmark

__all__ = ["CspBenchmarkSettings", "GenBenchmarkSettings", "run_csp_benchmark", "run_gen_benchmark"]
