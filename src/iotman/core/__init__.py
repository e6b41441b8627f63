"""Pure domain: events, definitions, ids, clock, scopes. No I/O here."""
