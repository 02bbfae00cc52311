"""Names of the filter stage that the CLI needs at start-up, kept apart from the pipeline so that
building the command line imports neither numpy's stack nor the metrics."""

#: Pipeline order; ``relax`` (CHGNet) is off unless asked for.
STAGE_ORDER = ("structural", "composition", "uniqueness", "novelty", "stability", "relax")
#: The per-candidate verdicts a filter run writes.
FILTERED_FILE = "filtered.csv"
