"""The HTTP API (a surface): FastAPI app assembly, dependencies and one router per resource. Imports the newsroom
and everything below it; nothing imports it but the CLI that serves it."""
