"""Storage ports (``ports``) and their adapters (one folder per technology)."""
