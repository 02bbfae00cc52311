"""The filter stage: reading candidates (``inputs``), one class per stage (``stages``, CHGNet in
``relax``), the reference hull (``hull``), the chunked, resumable pipeline and its config
(``pipeline``), and wiring a config to stages (``build``). Imports nothing heavy itself."""
