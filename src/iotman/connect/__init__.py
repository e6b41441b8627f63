"""Connect stage: turning request bodies into event payloads (decode, validate, stamp)."""
