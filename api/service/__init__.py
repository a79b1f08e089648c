"""The application layer: use cases, policies and the wiring, under every interface."""
