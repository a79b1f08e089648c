"""The HTTP API: routes, schemas, auth, SSE streams and the `runledger` command."""
