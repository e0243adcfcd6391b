"""Readers: turn retrieved passages into a short answer span with its supporting sentence, or an abstention."""
