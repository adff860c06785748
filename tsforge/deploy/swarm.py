"""docker/stack.yml deployed on Docker Swarm and removed whole, leaving the machine as it was.

For the live tests and the benchmark: the swarm is made (on loopback) only if the machine had
none, and left afterwards with the bridge network it created; the stack's containers,
networks, volumes and its gateway key's secret all go, even when what ran inside failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tsforge.deploy.containers import DOCKER_DIR, docker, wait_until


@contextlib.contextmanager
def deployed_stack(name: str, env: dict[str, str], key: str) -> Iterator[dict[str, str]]:
    """Deploy the stack as `name` with `env` (images, replicas, ports) and the gateway key
    `key` (a secret `<name>_key`); yields the environment it was deployed with."""
    created = docker("info", "-f", "{{.Swarm.LocalNodeState}}").stdout.strip() != "active"
    had_bridge = bool(docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$").stdout.strip())
    secret = f"{name}_key"
    env = {**env, "GATEWAY_SECRET": secret}
    label = f"label=com.docker.stack.namespace={name}"
    try:
        if created:
            docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        docker("secret", "create", secret, "-", input=key)
        docker("stack", "deploy", "-c", str(DOCKER_DIR / "stack.yml"), name, env=env)
        yield env
    finally:
        docker("stack", "rm", name, check=False)
        # Networks go once their containers have: wait, then drop the secret and the swarm.
        wait_until(
            "the stack's containers to stop", lambda: not docker("ps", "-aq", "--filter", label).stdout.strip(), 120
        )
        wait_until(
            "the stack's networks to go",
            lambda: not docker("network", "ls", "-q", "--filter", label).stdout.strip(),
            120,
        )
        docker("secret", "rm", secret, check=False)
        for volume in docker("volume", "ls", "-q", "--filter", label).stdout.split():
            docker("volume", "rm", volume, check=False)
        if created:
            docker("swarm", "leave", "--force", check=False)
            if not had_bridge:
                docker("network", "rm", "docker_gwbridge", check=False)
