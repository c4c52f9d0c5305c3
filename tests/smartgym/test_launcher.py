"""``smartgym serve``: one process per service over RabbitMQ and PostgreSQL, driven end to
end like an operator would (``smartgym up`` is driven in test_embedded_gate). One of them
runs on asyncio's own event loop, the others on uvloop (the default): both must serve."""

from __future__ import annotations

from tests.support.apps import free_port
from tests.support.journeys import signup_login_and_get_welcomed
from tests.support.processes import clean_env, start, stop, wait_healthy


def test_each_service_in_its_own_process_over_rabbitmq_and_postgres(
    tmp_path, rabbitmq_url, postgres, namespace, broker_cleanup
):
    ports = {name: free_port() for name in ("auth", "notification", "gateway")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = clean_env(
        SMARTGYM_BROKER_URL=rabbitmq_url,
        SMARTGYM_BUS_NAMESPACE=namespace,
        SMARTGYM_AUTH_DATABASE_URL=postgres.create("auth"),
        SMARTGYM_NOTIFICATION_DATABASE_URL=postgres.create("notification"),
        SMARTGYM_AUTH_URL=urls["auth"],
        SMARTGYM_NOTIFICATION_URL=urls["notification"],
        SMARTGYM_ENVIRONMENT="test",
    )
    loops = {"notification": "asyncio", "auth": "auto", "gateway": "uvloop"}
    processes = {}
    try:
        for name in ("notification", "auth", "gateway"):
            log = tmp_path / f"{name}.log"
            processes[name] = (
                start(
                    ["serve", name, "--host", "127.0.0.1", "--port", str(ports[name]), "--migrate"],
                    env={**env, "SMARTGYM_EVENT_LOOP": loops[name]},
                    cwd=tmp_path,
                    log=log,
                ),
                log,
            )
            wait_healthy(urls[name], *processes[name])
        signup_login_and_get_welcomed(urls["gateway"])
    finally:
        codes = {name: stop(process) for name, (process, _log) in reversed(processes.items())}
    assert codes == {"gateway": 0, "auth": 0, "notification": 0}
    ran_on = {
        name: "uvloop" if "(uvloop event loop)" in log.read_text() else "asyncio"
        for name, (_, log) in processes.items()
    }
    assert ran_on == {"notification": "asyncio", "auth": "uvloop", "gateway": "uvloop"}
