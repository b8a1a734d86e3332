"""What every stage shares: files, the run folder layout, console output, errors, names."""
VERSION = "0.3.0"
