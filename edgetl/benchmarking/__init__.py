"""Bench stage: RUN/export/ -> RUN/bench/ (session.bench). Every build timed and scored by its
bundle's runner in its own runtime, here or on a device; reports, roofline floors, verdicts."""
