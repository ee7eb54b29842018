"""Compiled inner loops (numba) and their Arrow glue; no pyspark import."""
