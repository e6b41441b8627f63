"""process stage (arrives with later issues)."""
