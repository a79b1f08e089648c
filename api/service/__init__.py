"""The application layer: the engine, the use cases, the policies."""
