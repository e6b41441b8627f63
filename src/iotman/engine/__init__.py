"""The engine: the ingest transaction, reads and admin operations, composed from the stages."""
