"""Export stage: read queries over the log and how pages are rendered."""
