"""Static checks of docker/Dockerfile, docker/docker-compose.yml, docker/prometheus.yml and /.dockerignore.

No container engine is needed: the Dockerfile goes through a small parser, the compose file through
PyYAML, every command a container runs through the real ``streamrec`` CLI parser (click's
``make_context``, which parses without running anything), and every ``STREAMREC_*`` variable through
``Settings``. A command or flag that does not exist fails here, not in a container at 3 a.m.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamrec.stream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "docker-compose.yml"
PROMETHEUS = ROOT / "docker" / "prometheus.yml"
DOCKERIGNORE = ROOT / ".dockerignore"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
STREAMREC_SERVICES = ("topics", "worker", "trainer", "replay")


# --- a tiny Dockerfile parser ------------------------------------------------------------------------------
@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str            # as written (may hold ${ARGS})
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    meta_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        found = [s for s in self.stages if s.name == name]
        assert found, f"no stage named {name!r} in {DOCKERFILE}"
        return found[0]

    def resolve(self, text: str) -> str:
        """Expand ${NAME} / $NAME from the ARGs before the first FROM (their defaults)."""
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.meta_args.get(m.group(1), m.group(0)), text)

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, innermost last."""
        out = [self.stage(name)]
        names = {s.name for s in self.stages}
        while (base := self.resolve(out[-1].image)) in names:
            out.append(self.stage(base))
        return out


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines (a trailing backslash); drop comments and blank lines, as Docker does."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):          # a comment inside a continuation is skipped
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        out.append((start, buf + line))
        buf = ""
    assert not buf, "the Dockerfile ends inside a line continuation"
    return out


def parse_dockerfile(text: str) -> Dockerfile:
    meta: dict[str, str] = {}
    stages: list[Stage] = []
    for n, line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else ""
            stages.append(Stage(words[0], name))
        elif not stages:
            assert keyword == "ARG", f"line {n}: {keyword} before the first FROM (only ARG may be there)"
            key, _, value = args.partition("=")
            meta[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: meta.get(m.group(1), m.group(0)), value.strip('"'))
        else:
            stages[-1].instructions.append(Instruction(keyword, args, n))
    return Dockerfile(meta, stages)


def exec_form(instr: Instruction) -> list[str]:
    args = instr.args
    assert args.startswith("["), f"line {instr.line}: {instr.keyword} should use the exec (JSON) form"
    return list(yaml.safe_load(args))


@cache
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


# --- the streamrec CLI ---------------------------------------------------------------------------------------
def check_cli(argv: list[str]) -> None:
    """Resolve ``streamrec ARGV`` through the real CLI: every (sub)command and flag exists and parses."""
    import typer.main

    import streamrec.cli

    group: Any = typer.main.get_command(streamrec.cli.app)
    ctx = group.make_context("streamrec", list(argv))
    cmd, path = group, ["streamrec"]
    while hasattr(cmd, "commands"):
        rest = [*(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])), *ctx.args]
        assert rest and rest[0] in cmd.commands, (
            f"`{' '.join(['streamrec', *argv])}`: {' '.join(path)} has no command {rest[:1]} "
            f"(it has: {', '.join(sorted(cmd.commands))})")
        name, cmd = rest[0], cmd.commands[rest[0]]
        path.append(name)
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        if not hasattr(cmd, "commands"):
            for token in rest[1:]:
                flag = token.split("=", 1)[0]
                assert not flag.startswith("-") or flag in known, (
                    f"`{' '.join(['streamrec', *argv])}`: {' '.join(path)} has no option {flag} "
                    f"(it has: {', '.join(sorted(known))})")
        ctx = cmd.make_context(name, rest[1:], parent=ctx)   # parses (types, required values); runs nothing


def interpolate(value: Any) -> str:
    """Compose's ${VAR:-default} / ${VAR-default}, taking the default (the value with nothing exported)."""
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", str(value))


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(v) for k, v in env.items()}


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


def image_cmd(target: str) -> list[str]:
    cmds = dockerfile().stage(target).all("CMD")
    return exec_form(cmds[-1]) if cmds else []


# --- Dockerfile ----------------------------------------------------------------------------------------------
def test_dockerfile_has_the_three_stages_each_from_a_pinned_image() -> None:
    df = dockerfile()
    assert [s.name for s in df.stages] == ["builder", "worker", "trainer"]
    names = {s.name for s in df.stages}
    for stage in df.stages:
        image = df.resolve(stage.image)
        if image in names:
            continue
        assert "$" not in image, f"stage {stage.name}: FROM {stage.image} does not resolve ({image})"
        repo, _, tag = image.split("@")[0].rpartition(":")
        assert repo and tag and tag != "latest", f"stage {stage.name}: FROM {image} is not pinned to a tag"
        assert DIGEST.search(image), f"stage {stage.name}: FROM {image} is not pinned to a digest"


def test_the_worker_image_runs_as_a_user_that_is_not_root() -> None:
    users = dockerfile().stage("worker").all("USER")
    assert users, "the worker stage has no USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), f"the worker runs as {users[-1].args}"
    trainer_users = dockerfile().stage("trainer").all("USER")
    assert trainer_users and trainer_users[-1].args.split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("target", ["worker", "trainer"])
def test_runtime_images_have_a_healthcheck_sigterm_and_the_streamrec_entrypoint(target: str) -> None:
    stage = dockerfile().stage(target)
    health = stage.all("HEALTHCHECK")
    assert health and "CMD" in health[-1].args and "NONE" not in health[-1].args.split()
    assert [i.args for i in stage.all("STOPSIGNAL")][-1:] == ["SIGTERM"]
    assert exec_form(stage.all("ENTRYPOINT")[-1]) == ["streamrec"]


def test_the_worker_healthcheck_probes_healthz_on_the_metrics_port() -> None:
    stage = dockerfile().stage("worker")
    assert "/healthz" in stage.all("HEALTHCHECK")[-1].args
    assert "STREAMREC_METRICS_PORT=9108" in " ".join(i.args for i in stage.all("ENV"))
    assert "9108" in " ".join(i.args for i in stage.all("EXPOSE"))


def _installed_requirements(run: str) -> list[str]:
    """Requirement specs given to ``pip install`` in one RUN line."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            commands[-1].append(token)
    specs: list[str] = []
    for words in commands:
        if "pip" not in " ".join(words[:4]) or "install" not in words:
            continue
        after = words[words.index("install") + 1:]
        skip_next = False
        for word in after:
            if skip_next:
                skip_next = False
            elif word in ("-r", "-c", "--index-url", "-i", "--extra-index-url", "--find-links", "-f",
                          "--target", "--prefix", "--root"):
                skip_next = True
            elif not word.startswith("-"):
                specs.append(word)
    return specs


def test_the_worker_image_never_installs_torch_or_cuda() -> None:
    for stage in dockerfile().chain("worker"):
        for run in stage.all("RUN"):
            for spec in _installed_requirements(run.args):
                low = spec.lower()
                assert not re.match(r"(torch|nvidia|triton)\b", low) and "[train" not in low, (
                    f"stage {stage.name} line {run.line} installs {spec}")
    trainer_specs = [s for r in dockerfile().stage("trainer").all("RUN") for s in _installed_requirements(r.args)]
    assert any(s.startswith("torch") for s in trainer_specs), "the trainer image should install torch"


def test_pyproject_keeps_torch_in_the_train_extra_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("torch")]
    assert any(d.startswith("torch") for d in project["optional-dependencies"]["train"])


@pytest.mark.parametrize("target", ["worker", "trainer"])
def test_image_env_sets_only_real_settings(target: str) -> None:
    known = set(Settings.env_names())
    for env in dockerfile().stage(target).all("ENV"):
        for name in re.findall(r"(\w+)=", env.args):
            assert not name.startswith("STREAMREC_") or name in known, f"{target}: {name} is not a setting"


@pytest.mark.parametrize("target", ["worker", "trainer"])
def test_image_default_commands_exist_in_the_cli(target: str) -> None:
    assert image_cmd(target), f"the {target} stage has no CMD"
    check_cli(image_cmd(target))


def test_the_worker_starts_without_torch() -> None:
    """What the worker image checks at build time: the worker and the CLI import with torch absent."""
    code = "import sys; sys.modules['torch'] = None; import streamrec.consumers.worker, streamrec.cli"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


# --- compose -------------------------------------------------------------------------------------------------
def test_compose_has_every_service() -> None:
    assert set(services()) == {"kafka", "topics", "worker", "trainer", "serve", "replay", "prometheus"}


def test_every_service_has_a_healthcheck() -> None:
    for name, svc in services().items():
        hc = svc.get("healthcheck")
        assert isinstance(hc, dict), f"service {name} has no healthcheck"
        one_shot = str(svc.get("restart", "no")) == "no"
        if hc.get("disable"):
            assert one_shot, f"service {name} runs for good but its healthcheck is disabled"
        else:
            assert hc.get("test"), f"service {name}: healthcheck without a test"


def test_every_image_is_pinned() -> None:
    for name, svc in services().items():
        image = interpolate(svc.get("image", ""))
        if "build" in svc:
            continue        # built here from docker/Dockerfile, whose FROM lines are pinned
        tag = image.split("@")[0].rpartition(":")[2]
        assert tag and tag != "latest" and DIGEST.search(image), f"service {name}: image {image!r} is not pinned"


def test_streamrec_services_are_built_from_our_dockerfile() -> None:
    for name in STREAMREC_SERVICES:
        build = services()[name]["build"]
        assert build["context"] == ".." and build["dockerfile"] == "docker/Dockerfile"
        assert build["target"] in ("worker", "trainer")
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


@pytest.mark.parametrize("name", STREAMREC_SERVICES)
def test_streamrec_services_set_only_real_settings(name: str) -> None:
    env = env_of(services()[name])
    unknown = set(env) - set(Settings.env_names())
    assert not unknown, f"service {name} sets {sorted(unknown)}, which are not streamrec settings"
    assert env["STREAMREC_BOOTSTRAP_SERVERS"] == "kafka:9092"
    Settings.from_env(env)            # values parse and validate (types, guarantee)


@pytest.mark.parametrize("name", STREAMREC_SERVICES)
def test_streamrec_service_commands_exist_in_the_cli(name: str) -> None:
    svc = services()[name]
    command = svc.get("command") or image_cmd(svc["build"]["target"])
    assert isinstance(command, list), f"service {name}: give the command as a list"
    check_cli([str(c) for c in command])


def test_the_cli_check_catches_a_missing_command_or_flag() -> None:
    with pytest.raises(AssertionError, match="no command"):
        check_cli(["no-such-command"])
    with pytest.raises(AssertionError, match="no option --bogus"):
        check_cli(["replay", "x.jsonl", "--format", "jsonl", "--bogus"])


def test_workers_share_their_group_and_partitions_with_the_topic_initialiser() -> None:
    keys = ("STREAMREC_GROUP", "STREAMREC_EVENTS_PARTITIONS", "STREAMREC_EVENTS_TOPIC")
    wanted = {k: env_of(services()["topics"]).get(k) for k in keys}
    for name in ("worker", "trainer", "replay"):
        assert {k: env_of(services()[name]).get(k) for k in keys} == wanted, name


def test_the_worker_scales() -> None:
    worker = services()["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert "9108" in [str(p) for p in worker.get("expose", [])]
    assert env_of(worker)["STREAMREC_METRICS_PORT"] == "9108"
    assert "/healthz" in healthcheck_text(worker)
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_kafka_runs_kraft_combined_with_single_replica_internal_topics() -> None:
    kafka = services()["kafka"]
    assert interpolate(kafka["image"]).startswith(f"apache/kafka:{Settings().kafka_version}@"), (
        "the compose broker should run the Kafka version of the embedded broker")
    env = env_of(kafka)
    assert all(k.startswith("KAFKA_") for k in env), sorted(env)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    for key in ("KAFKA_NODE_ID", "KAFKA_LISTENERS", "KAFKA_CONTROLLER_QUORUM_VOTERS",
                "KAFKA_CONTROLLER_LISTENER_NAMES"):
        assert env.get(key), key
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env[key] == "1", key
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert services()["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_replay_and_prometheus_are_profiles() -> None:
    replay, prom = services()["replay"], services()["prometheus"]
    assert replay["profiles"] and prom["profiles"]
    assert "./data:/data:ro" in replay["volumes"]
    mounts = [v.split(":")[0] for v in prom["volumes"]]
    assert (COMPOSE.parent / mounts[0]).resolve() == PROMETHEUS


def test_prometheus_finds_every_worker_through_docker_dns() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    sd = [c for job in config["scrape_configs"] for c in job.get("dns_sd_configs", [])]
    assert {"names": ["worker"], "type": "A", "port": 9108} in [
        {k: c[k] for k in ("names", "type", "port")} for c in sd]


# --- .dockerignore -------------------------------------------------------------------------------------------
def _pattern(p: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        elif p[i] == "[":
            j = p.index("]", i)
            out, i = out + p[i:j + 1], j + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    return re.compile(out)


def ignored(path: str, lines: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    result = False
    for raw in lines:
        negate = raw.startswith("!")
        pat = _pattern(raw.lstrip("!").strip("/"))
        if any(pat.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def dockerignore_lines() -> list[str]:
    return [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".git/HEAD", "data/events.jsonl", "docker/data/events.jsonl", ".cache/streamrec/x",
    ".pytest_cache/v/x", ".mypy_cache/x.json", ".ruff_cache/x", ".hypothesis/x", "stream/__pycache__/serde.pyc",
    "streamrec.egg-info/PKG-INFO", "tests/unit/test_health.py", "reports/x.md",
])
def test_dockerignore_keeps_out(path: str) -> None:
    assert ignored(path, dockerignore_lines()), path


def test_dockerignore_lets_in_everything_the_wheel_is_built_from() -> None:
    lines = dockerignore_lines()
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    for pkg in folders:
        assert not ignored(f"{pkg}/__init__.py", lines), f"package {pkg} is left out of the build context"
    for path in ("pyproject.toml", "stream/schemas/event.avsc", "stream/broker/pom.xml", "docker/../README.md"):
        assert not ignored(path.replace("docker/../", ""), lines), path


# --- podman: the offline build and podman-compose 1.0 -----------------------------------------------------
def test_healthchecks_are_shell_strings_that_podman_compose_runs_unchanged() -> None:
    """podman-compose 1.0 joins a CMD list into one broken word and pops CMD-SHELL off the list it shares
    between replicas; a string runs in the shell under Docker and podman alike."""
    for name, svc in services().items():
        test = (svc.get("healthcheck") or {}).get("test")
        assert test is None or isinstance(test, str), f"service {name}: give the healthcheck test as a string"


def test_the_offline_build_arguments_exist_where_they_are_used() -> None:
    df = dockerfile()
    for target in ("builder", "trainer"):
        args = [i.args.split("=")[0] for i in df.stage(target).all("ARG")]
        assert "PIP_NO_INDEX" in args, f"stage {target} does not take PIP_NO_INDEX"
    # The wheelhouse is bind-mounted into the steps that install, never copied into a layer.
    copies = [i.args.split() for s in df.stages for i in s.all("COPY")]
    assert not [c for c in copies if "wheelhouse" in " ".join(c) or "." in c[:-1]], copies
    for target in ("builder", "worker", "trainer"):
        mounts = [i.args for i in df.stage(target).all("RUN") if "pip" in i.args and " install" in i.args
                  or "pip wheel" in i.args]
        assert mounts and all("type=bind,source=docker/wheelhouse,target=/wheelhouse" in m for m in mounts), target
    assert not ignored("docker/wheelhouse/numpy-2.0-cp311-cp311-manylinux_2_28_x86_64.whl", dockerignore_lines())
    assert ignored("docker/offline.py", dockerignore_lines())


def test_the_builder_copies_every_package_folder_and_nothing_else() -> None:
    """The builder copies the folders the wheel is built from by name (a ``COPY . .`` would copy the
    wheelhouse into a layer); a new top-level package needs a COPY line there."""
    copies = [i.args.split() for i in dockerfile().stage("builder").all("COPY")]
    sources = {c[0].rstrip("/") for c in copies}
    folders = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    assert folders <= sources, f"not copied into the builder: {sorted(folders - sources)}"
    assert sources <= folders | {"pyproject.toml", "README.md"}, sorted(sources)


def test_the_trainer_is_the_worker_plus_torch() -> None:
    df = dockerfile()
    assert df.stage("trainer").image == "worker"
    specs = [s for r in df.stage("trainer").all("RUN") for s in _installed_requirements(r.args)]
    assert [s for s in specs if not s.startswith("torch")] == [], specs


def test_the_local_kafka_image_answers_the_compose_healthcheck() -> None:
    local = parse_dockerfile((ROOT / "docker" / "kafka" / "Dockerfile").read_text())
    probe = list(yaml.safe_load(local.stages[-1].all("HEALTHCHECK")[-1].args.partition(" CMD ")[2]))
    assert probe[0] == "/opt/kafka/bin/kafka-broker-api-versions.sh"
    assert (ROOT / "docker" / "kafka" / Path(probe[0]).name).exists()
    assert healthcheck_text(services()["kafka"]).startswith(probe[0] + " --bootstrap-server localhost:9092")


def _stack_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("podman_stack", ROOT / "docker" / "podman_stack.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("podman_stack", module)
    spec.loader.exec_module(module)
    return sys.modules["podman_stack"]


def test_podman_stack_applies_profiles_scale_and_depends_on_order(tmp_path: Path) -> None:
    mod = _stack_module()
    stack = mod.Stack("p", profiles=("replay",), scale={"worker": 3}, data_dir=tmp_path)
    spec = stack.effective()
    assert "prometheus" not in spec["services"] and "replay" in spec["services"]
    assert spec["services"]["worker"]["deploy"]["replicas"] == 3
    assert spec["services"]["replay"]["volumes"] == [f"{tmp_path.resolve()}:/data:ro"]
    order = stack.order(spec["services"])
    assert order.index("kafka") < order.index("topics") < order.index("worker")
    assert order.index("topics") < order.index("trainer") and order.index("topics") < order.index("replay")
    assert mod.Stack.depends_on(spec["services"]["worker"]) == {"topics": "service_completed_successfully"}
    assert mod.seconds("1m30s", 0) == 90 and mod.seconds("500ms", 0) == 0.5 and mod.seconds(None, 7) == 7


# --- podman_stack's ordering and health logic, against a fake podman ---------------------------------------
class FakePodman:
    """Containers of the compose services whose state moves as the script starts them: ``kafka`` turns
    healthy after ``kafka_checks`` healthchecks, ``topics`` exits with ``topics_exit`` on the first look after
    its start. Records every start and every healthcheck, in order."""

    def __init__(self, services: dict[str, Any], topics_exit: int = 0, kafka_checks: int = 2,
                 healthy: bool = True) -> None:
        self.names = {svc: [f"{svc}_{i}" for i in range(1, (s.get("deploy") or {}).get("replicas", 1) + 1)]
                      for svc, s in services.items()}
        self.status = {n: "created" for names in self.names.values() for n in names}
        self.topics_exit, self.kafka_checks, self.healthy = topics_exit, kafka_checks, healthy
        self.replay_exit = 0
        self.events: list[str] = []

    def containers(self, service: str | None = None, running_only: bool = False) -> list[str]:
        names = self.names[service] if service else [n for ns in self.names.values() for n in ns]
        return [n for n in names if not running_only or self.status[n] == "running"]

    def start(self, *names: str) -> None:
        for n in names:
            self.events.append(f"start {n}")
            self.status[n] = "running"

    def inspect(self, name: str) -> dict[str, Any]:
        if name.startswith("topics") and self.status[name] == "running":
            self.status[name] = "exited"
            self.events.append(f"exit {name} {self.topics_exit}")
        one_shot = name.startswith(("topics", "replay"))      # healthcheck disabled in the compose file
        return {"State": {"Status": self.status[name], "ExitCode": self.topics_exit if name.startswith("topics")
                          else 0}, "Config": {} if one_shot else {"Healthcheck": {"Test": ["CMD-SHELL", "x"]}}}

    def healthcheck(self, name: str) -> bool:
        self.events.append(f"health {name}")
        if name.startswith("kafka"):
            self.kafka_checks -= 1
            return self.kafka_checks <= 0
        return self.healthy


def _fake_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **kw: Any) -> tuple[Any, FakePodman]:
    mod = _stack_module()
    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    stack = mod.Stack("p", profiles=("replay",), scale={"worker": 3}, data_dir=tmp_path)
    fake = FakePodman(stack.effective()["services"], **kw)
    monkeypatch.setattr(stack, "compose", lambda *a, **k: None)
    monkeypatch.setattr(stack, "containers", fake.containers)
    monkeypatch.setattr(stack, "inspect", fake.inspect)
    monkeypatch.setattr(stack, "healthcheck", fake.healthcheck)
    monkeypatch.setattr(stack, "logs", lambda name, lines=40: f"log of {name}")
    monkeypatch.setattr(mod, "podman", lambda *a, **k: fake.start(*a[1:]) if a[0] == "start" else None)
    monkeypatch.setattr(mod.time, "sleep", lambda s: None)
    return stack, fake


def test_podman_stack_starts_workers_only_after_a_healthy_broker_and_the_topics_exiting_0(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stack, fake = _fake_stack(monkeypatch, tmp_path)
    stack.up(timeout_s=30)
    ev = fake.events
    healthy = max(i for i, e in enumerate(ev) if e == "health kafka_1")
    assert ev.index("start kafka_1") < healthy < ev.index("start topics_1") < ev.index("exit topics_1 0")
    for name in ("worker_1", "worker_2", "worker_3", "trainer_1", "replay_1"):
        assert ev.index(f"start {name}") > ev.index("exit topics_1 0"), name


def test_podman_stack_stops_when_the_topic_initialiser_fails(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    stack, fake = _fake_stack(monkeypatch, tmp_path, topics_exit=1)
    with pytest.raises(_stack_module().StackError, match=r"(?s)topics exited with \[1\].*log of topics_1"):
        stack.up(timeout_s=30)
    assert not [e for e in fake.events if e.startswith(("start worker", "start trainer", "start replay"))]


def test_podman_stack_stops_when_the_broker_never_turns_healthy(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    stack, fake = _fake_stack(monkeypatch, tmp_path, kafka_checks=10**9)
    clock = iter(range(0, 10**6, 5))
    monkeypatch.setattr(_stack_module().time, "monotonic", lambda: float(next(clock)))
    with pytest.raises(_stack_module().StackError, match="kafka did not reach service_healthy"):
        stack.up(timeout_s=60)
    assert "start topics_1" not in fake.events


def test_podman_stack_reports_a_failing_healthcheck(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stack, fake = _fake_stack(monkeypatch, tmp_path)
    stack.up(timeout_s=30)
    assert stack.unhealthy() == []
    fake.healthy = False
    assert sorted(stack.unhealthy()) == ["trainer_1", "worker_1", "worker_2", "worker_3"]   # not the broker


def test_a_job_that_finishes_between_the_listing_and_its_healthcheck_is_not_unhealthy(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """podman-compose 1.0 keeps the image's HEALTHCHECK on the replay job: it can be listed as running, then
    exit 0 before its check runs (which then fails). It finished; a job that exits non-zero is still reported."""
    stack, fake = _fake_stack(monkeypatch, tmp_path)
    stack.up(timeout_s=30)
    real_inspect, real_check = fake.inspect, fake.healthcheck

    def inspect(name: str) -> dict[str, Any]:
        info = real_inspect(name)
        if name.startswith("replay"):
            info["Config"] = {"Healthcheck": {"Test": ["CMD-SHELL", "x"]}}
            info["State"]["ExitCode"] = fake.replay_exit
        return info

    def healthcheck(name: str) -> bool:
        if name.startswith("replay"):
            fake.status[name] = "exited"          # it ends while podman runs the check
            return False
        return real_check(name)

    monkeypatch.setattr(stack, "inspect", inspect)
    monkeypatch.setattr(stack, "healthcheck", healthcheck)
    assert stack.unhealthy() == []
    fake.status["replay_1"], fake.replay_exit = "running", 3
    assert stack.unhealthy() == ["replay_1"]


def test_podman_stack_refuses_to_wait_for_health_without_a_healthcheck(tmp_path: Path) -> None:
    mod = _stack_module()
    stack = mod.Stack("p")
    with pytest.raises(mod.StackError, match="has no healthcheck"):
        stack.wait_condition("topics", "service_healthy", {"healthcheck": {"disable": True}}, float("inf"))
