"""The application layer: the engine, the use cases, the policies and the wiring, under
every interface (HTTP, CLI)."""
