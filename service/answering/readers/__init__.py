"""Readers: turn retrieved passages into a short answer span with its supporting sentence, or an abstention; and
the training, calibration and model card of the shipped span reader. Part of answering: imports ``index`` only."""
