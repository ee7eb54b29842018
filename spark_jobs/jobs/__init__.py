"""The jobs behind the commands: engine jobs (`run(engine, warehouse, defs, run, **options)`) and
the jobs that need no engine."""
