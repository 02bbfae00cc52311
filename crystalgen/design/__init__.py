"""Property-guided inverse design: jobs (YAML), strategies (screen, guided, optimise from seeds),
the independent oracle that judges them, and their reports."""
