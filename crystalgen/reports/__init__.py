"""Benchmark reports: a small document model rendered to Markdown and self-contained HTML
(:mod:`~crystalgen.reports.document`), matplotlib figures (:mod:`~crystalgen.reports.figures`) and the
published figures reports compare against (:mod:`~crystalgen.reports.published`)."""
