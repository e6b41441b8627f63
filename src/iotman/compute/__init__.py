"""compute stage (arrives with later issues)."""
