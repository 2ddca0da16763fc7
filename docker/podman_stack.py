"""Bring docker/docker-compose.yml up with podman-compose the way `docker compose up` would.

Debian bookworm's podman-compose (1.0.x) creates the containers, network and aliases from the compose file
but ignores profiles, ``--scale`` and the conditions of ``depends_on``, and without systemd podman runs
no healthcheck on its own. This script fills those gaps and nothing more:

    .venv/bin/python docker/podman_stack.py up --scale worker=3 [--profile replay] [-p streamrec]
    .venv/bin/python docker/podman_stack.py health                  # run every healthcheck once
    .venv/bin/python docker/podman_stack.py down

``up`` writes the effective compose file (services of profiles not asked for left out, ``--scale N`` as
``deploy.replicas: N``, relative host paths made absolute) to ~/.cache/streamrec/compose/<project>.yml, has
``podman-compose up -d --no-build --no-start`` create every container, then starts the services in
``depends_on`` order: a dependency with ``service_healthy`` is started and its healthcheck run
(``podman healthcheck run``) until it passes, one with ``service_completed_successfully`` must exit 0
first. Every wait is bounded; a dependency that fails stops ``up`` with its log tail. ``down`` removes
the project's containers (stopped together, each with its stop signal and a grace period) and network.
podman uses docker/podman/containers.conf (CONTAINERS_CONF).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker" / "docker-compose.yml"
CONF = ROOT / "docker" / "podman" / "containers.conf"
PROJECT_LABEL = "io.podman.compose.project"


class StackError(RuntimeError):
    """The stack did not come up (or down); the message says which service and shows its log tail."""


def exe(name: str) -> str:
    return shutil.which(name) or name


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONF))
    return env


def podman(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([exe("podman"), *args], env=podman_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise StackError(f"`podman {' '.join(args[:3])}` failed: {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc


def seconds(value: Any, default: float) -> float:
    """Compose durations: 10s, 1m30s, 500ms, or a number of seconds."""
    if value is None:
        return default
    text, total, num = str(value).strip(), 0.0, ""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    i = 0
    while i < len(text):
        if text[i].isdigit() or text[i] == ".":
            num += text[i]
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else text[i]
        total += float(num) * units[unit]
        num, i = "", i + len(unit)
    return total + (float(num) if num else 0.0)


@dataclass
class Stack:
    project: str
    compose_file: Path = COMPOSE
    profiles: tuple[str, ...] = ()
    scale: dict[str, int] | None = None
    data_dir: Path | None = None          # mounted where the compose file mounts ./data

    # --- the effective compose file -------------------------------------------------------------------------
    def effective(self) -> dict[str, Any]:
        spec = yaml.safe_load(self.compose_file.read_text())
        base = self.compose_file.parent
        services: dict[str, Any] = {}
        for name, svc in spec["services"].items():
            wanted = svc.pop("profiles", None)
            if wanted and not set(wanted) & set(self.profiles):
                continue
            if "build" in svc:
                svc["build"]["context"] = str((base / svc["build"]["context"]).resolve())
            volumes = []
            for vol in svc.get("volumes", []):
                src, sep, rest = str(vol).partition(":")
                if src.startswith("."):
                    target = self.data_dir if (self.data_dir and src.rstrip("/") == "./data") else base / src
                    src = str(Path(target).resolve())
                volumes.append(src + sep + rest)
            if volumes:
                svc["volumes"] = volumes
            if self.scale and name in self.scale:
                svc.setdefault("deploy", {})["replicas"] = self.scale[name]
            services[name] = svc
        for name, svc in services.items():
            missing = set(self.depends_on(svc)) - set(services)
            if missing:
                raise StackError(f"service {name} depends on {sorted(missing)}, left out by its profile")
        spec["services"] = services
        spec["name"] = self.project
        return spec

    @staticmethod
    def depends_on(svc: dict[str, Any]) -> dict[str, str]:
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            return {d: "service_started" for d in deps}
        return {d: (c or {}).get("condition", "service_started") for d, c in deps.items()}

    @property
    def effective_path(self) -> Path:
        home = os.environ.get("STREAMREC_HOME") or str(Path.home() / ".cache" / "streamrec")
        return Path(home) / "compose" / f"{self.project}.yml"

    def compose(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        cmd = [exe("podman-compose"), "-p", self.project, "-f", str(self.effective_path), *args]
        proc = subprocess.run(cmd, env=podman_env(), capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise StackError(f"`{' '.join(cmd)}` failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
        return proc

    # --- containers -----------------------------------------------------------------------------------------
    def containers(self, service: str | None = None, running_only: bool = False) -> list[str]:
        args = ["ps", "--format", "{{.Names}}", "--filter", f"label={PROJECT_LABEL}={self.project}"]
        if not running_only:
            args.insert(1, "-a")
        if service:
            args += ["--filter", f"label=com.docker.compose.service={service}"]
        return sorted(n for n in podman(*args).stdout.split() if n)

    def inspect(self, name: str) -> dict[str, Any]:
        return dict(json.loads(podman("inspect", name).stdout)[0])

    def ip(self, name: str) -> str:
        nets = self.inspect(name)["NetworkSettings"]["Networks"]
        return str(next(iter(nets.values()))["IPAddress"])

    def logs(self, name: str, lines: int = 40) -> str:
        proc = podman("logs", "--tail", str(lines), name, check=False)
        return (proc.stdout + proc.stderr).strip()

    def healthcheck(self, name: str) -> bool:
        return podman("healthcheck", "run", name, check=False, timeout=60).returncode == 0

    # --- up / down ------------------------------------------------------------------------------------------
    def order(self, services: dict[str, Any]) -> list[str]:
        done: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in done:
                return
            if name in path:
                raise StackError(f"depends_on cycle: {' -> '.join((*path, name))}")
            for dep in self.depends_on(services[name]):
                visit(dep, (*path, name))
            done.append(name)

        for name in services:
            visit(name, ())
        return done

    def up(self, timeout_s: float = 300.0) -> dict[str, float]:
        """Create every container, start them in dependency order; {service: seconds after start of up}."""
        spec = self.effective()
        self.effective_path.parent.mkdir(parents=True, exist_ok=True)
        self.effective_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        self.compose("up", "--no-build", "--no-start")   # (1.0.x: -d with --no-start breaks `create`)
        services = spec["services"]
        started: dict[str, float] = {}
        satisfied: dict[tuple[str, str], bool] = {}
        for name in self.order(services):
            for dep, condition in self.depends_on(services[name]).items():
                if not satisfied.get((dep, condition)):
                    self.wait_condition(dep, condition, services[dep], deadline)
                    satisfied[(dep, condition)] = True
            names = self.containers(name)
            if not names:
                raise StackError(f"podman-compose created no container for service {name}")
            podman("start", *names)
            started[name] = time.monotonic() - t0
        return started

    def wait_condition(self, service: str, condition: str, svc: dict[str, Any], deadline: float) -> None:
        names = self.containers(service)
        if condition == "service_started":
            return
        hc = svc.get("healthcheck") or {}
        every = min(seconds(hc.get("interval"), 5.0), 2.0)
        while time.monotonic() < deadline:
            states = [self.inspect(n)["State"] for n in names]
            if condition == "service_completed_successfully":
                if all(s["Status"] == "exited" for s in states):
                    codes = [int(s["ExitCode"]) for s in states]
                    if any(codes):
                        raise StackError(f"{service} exited with {codes}; `up` stops here. Log tail:\n"
                                         + self.logs(names[0]))
                    return
            elif condition == "service_healthy":
                if hc.get("disable") or not hc.get("test"):
                    raise StackError(f"{service} is waited for as service_healthy but has no healthcheck")
                if all(s["Status"] == "running" for s in states) and all(self.healthcheck(n) for n in names):
                    return
                if any(s["Status"] == "exited" for s in states) and svc.get("restart", "no") == "no":
                    raise StackError(f"{service} exited before it was healthy. Log tail:\n" + self.logs(names[0]))
            else:
                raise StackError(f"depends_on condition {condition!r} of {service} is not known")
            time.sleep(every)
        raise StackError(f"{service} did not reach {condition} in time. Log tail:\n" + self.logs(names[0]))

    def unhealthy(self) -> list[str]:
        """Running containers whose healthcheck fails now (those without one are skipped, and so is a one-shot
        job such as the replay that finished between the listing and its check)."""
        bad = []
        for name in self.containers(running_only=True):
            config = self.inspect(name).get("Config", {})
            if config.get("Healthcheck") and not self.healthcheck(name):
                state = self.inspect(name).get("State", {})
                if state.get("Status") == "running" or int(state.get("ExitCode") or 0) != 0:
                    bad.append(name)
        return bad

    def down(self, grace_s: float = 30.0) -> None:
        """Remove every container and the network of the project (whatever state they are in). The running
        containers get their stop signal (SIGTERM: workers finish the batch and commit) and ``grace_s``
        before SIGKILL, all at once rather than one service after another."""
        names = self.containers()
        if names:
            podman("stop", "-t", str(int(grace_s)), *names, check=False, timeout=grace_s + 120)
            podman("rm", "-f", "-t", "0", *names, check=False, timeout=300)
        podman("network", "rm", "-f", f"{self.project}_default", check=False)
        self.effective_path.unlink(missing_ok=True)


def parse_scale(items: Iterable[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, num = item.partition("=")
        if not sep or not num.isdigit():
            raise SystemExit(f"--scale {item!r}: give SERVICE=N")
        out[name] = int(num)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "health"])
    parser.add_argument("-p", "--project", default="streamrec")
    parser.add_argument("-f", "--file", type=Path, default=COMPOSE)
    parser.add_argument("--profile", action="append", default=[])
    parser.add_argument("--scale", action="append", default=[], metavar="SERVICE=N")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for `up` to finish")
    args = parser.parse_args(argv)
    stack = Stack(args.project, args.file, tuple(args.profile), parse_scale(args.scale))
    try:
        if args.command == "up":
            for service, at in stack.up(args.timeout).items():
                print(f"{service:12s} started at {at:6.1f} s")
        elif args.command == "health":
            bad = stack.unhealthy()
            print("unhealthy: " + ", ".join(bad) if bad else "every healthcheck passes")
            return 1 if bad else 0
        else:
            stack.down()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
