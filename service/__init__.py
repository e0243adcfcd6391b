"""Answering, the HTTP API and the command line: everything that turns the index into cited answers."""
