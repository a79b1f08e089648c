"""Read models built from the event log, each tracked by the position it has reached."""
