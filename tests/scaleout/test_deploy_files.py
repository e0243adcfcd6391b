"""The deployment example names real settings: a typo in an environment variable would be silently ignored."""

from __future__ import annotations

import re

import yaml

from service.settings import REPO_ROOT, Settings

DEPLOY = REPO_ROOT / "deploy"


def test_compose_configures_the_postgres_backend_with_real_settings():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    assert {"db", "qa", "nginx"} <= set(compose["services"])
    assert "pgvector" in compose["services"]["db"]["image"]
    env = {k: v for k, v in compose["services"]["qa"]["environment"].items()}
    fields = {name.upper() for name in Settings.model_fields}
    assert all(k.startswith("NEWSROOM_QA_") and k.removeprefix("NEWSROOM_QA_") in fields for k in env), env
    values = {k.removeprefix("NEWSROOM_QA_").lower(): v for k, v in env.items() if not str(v).startswith("${")}
    settings = Settings(**values)
    assert settings.backend == "postgres" and settings.database_url.startswith("postgresql://")
    db = compose["services"]["db"]["environment"]
    assert f"{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@db:5432/{db['POSTGRES_DB']}" in settings.database_url


def test_nginx_balances_the_replicas_and_streams():
    conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    assert re.search(r"server qa:8000;", conf) and "proxy_pass http://newsroom_qa;" in conf
    assert "proxy_buffering off;" in conf  # server-sent events of the streaming chat
