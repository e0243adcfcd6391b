"""Conversations on top of answering: chat turns, follow-up questions resolved against earlier turns, feedback, and
the database that keeps them. Imports ``service.answering``; never a surface."""
