"""What a run writes: units.csv, summary.json, spec.resolved.yaml and run.json."""
