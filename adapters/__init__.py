"""Everything that touches the outside: store settings, SQL, the change feed, keys."""
