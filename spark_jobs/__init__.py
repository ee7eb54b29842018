"""tilewise: YAML feature definitions -> block aggregates -> point-in-time training tables."""

__version__ = "0.1.0"
