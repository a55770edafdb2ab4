"""The report: figures, unit cards, report.html, the rating page and merged ratings."""
