"""Everything that turns the archive into cited answers: ``answering/`` (imports ``index``), ``conversation/`` (on
top of answering), ``evaluation/``, and the surfaces ``api/``, ``cli/``, ``slack/``, ``web/``, which may import any of
them. Shared at the top: settings, schemas, prompts, rendering, ``newsroom.py`` (the services of one archive)."""
