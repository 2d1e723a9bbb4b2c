"""The report: the Study of a results directory, the figures' frames and figures, REPORT.md's text."""
