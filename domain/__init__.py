"""The pure domain: aggregates, their events and invariants, and the engine that runs commands."""
