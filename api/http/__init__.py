"""The HTTP face of the application: routes, streams, auth, errors and request plumbing."""
