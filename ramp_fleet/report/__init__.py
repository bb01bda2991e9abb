"""The operator's report: figures from the store, one self-contained HTML page, JSON."""
