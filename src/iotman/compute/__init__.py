"""Compute: JSONata expressions, views, and (later) functions, triggers and cron jobs."""
