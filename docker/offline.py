"""Build streamrec's images with podman on a machine that reaches no image registry, with no network in
any build: the bases from Debian's packages (debootstrap), Python wheels from a host wheelhouse, the Kafka
jars from the broker provisioning. Run as root on Debian or Ubuntu (podman's storage is root's):

    .venv/bin/python docker/offline.py all          # what `make images` runs
    .venv/bin/python docker/offline.py all --fresh  # new Debian bases, so every layer is built again

Steps (each one also a subcommand):

    tools      apt-get install podman runc podman-compose debootstrap, only those missing
    bases      localhost/streamrec/base-python:bookworm (python3 in a venv at /opt/python) and
               localhost/streamrec/base-jre:bookworm (openjdk-17-jre-headless), from
               `debootstrap --variant=minbase bookworm`; the root file systems are cached as tarballs
               under ~/.cache/streamrec/images and reused until --fresh
    wheelhouse docker/wheelhouse/: `pip wheel` of every dependency, setuptools and wheel, torch (from
               PIP_FIND_LINKS, e.g. ../shared/wheels, or the PyTorch CPU index)
    kafka      streamrec/kafka:<version> from docker/kafka/ and the provisioned jars
    images     streamrec/worker:dev and streamrec/trainer:dev from docker/Dockerfile (--network none)

podman runs with CONTAINERS_CONF=docker/podman/containers.conf (this machine's files are not edited) and
BUILDAH_FORMAT=docker (so HEALTHCHECK survives in the images). Each step prints how long it took.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
CONF = DOCKER / "podman" / "containers.conf"
WHEELHOUSE = DOCKER / "wheelhouse"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
TOOLS = {"podman": "podman", "runc": "runc", "podman-compose": "podman-compose", "debootstrap": "debootstrap"}
# base name -> (Debian packages beyond minbase, image tag)
BASES = {
    "python": (["python3", "python3-venv"], "localhost/streamrec/base-python:bookworm"),
    "jre": (["openjdk-17-jre-headless"], "localhost/streamrec/base-jre:bookworm"),
}
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WORKER_IMAGE = "streamrec/worker:dev"
TRAINER_IMAGE = "streamrec/trainer:dev"
TORCH_VERSION = "2.13.0"
# Trimmed from the Debian roots: documentation, translations, apt's lists and caches.
PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/lib/apt/lists",
         "var/cache/apt", "var/cache/debconf/templates.dat-old", "var/log")


class SetupError(RuntimeError):
    """A step cannot run on this machine; the message says why and what to do."""


def exe(name: str) -> str:
    """The absolute path of a command (as given when it is not on PATH: running it then fails clearly)."""
    return shutil.which(name) or name


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONF))
    env["BUILDAH_FORMAT"] = "docker"
    return env


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        quiet: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure raise SetupError with the tail of its output."""
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(list(cmd), env=env, cwd=cwd, text=True, check=False,
                          stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout or "").splitlines()[-30:])
        raise SetupError(f"`{' '.join(cmd[:4])} ...` failed with exit code {proc.returncode}\n{tail}")
    return proc


@contextmanager
def timed(label: str, timings: dict[str, float]) -> Iterator[None]:
    start = time.monotonic()
    yield
    timings[label] = time.monotonic() - start
    print(f"== {label}: {timings[label]:.1f} s", flush=True)


def cache_dir() -> Path:
    """~/.cache/streamrec/images, or under STREAMREC_HOME (the broker's jar cache lives beside it)."""
    home = os.environ.get("STREAMREC_HOME") or str(Path.home() / ".cache" / "streamrec")
    return Path(home) / "images"


# --- tools --------------------------------------------------------------------------------------------------
def ensure_tools() -> None:
    """Install podman, runc, podman-compose and debootstrap with apt-get where a command is missing."""
    missing = [pkg for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise SetupError(f"missing {', '.join(missing)}; install them as root (Debian/Ubuntu: "
                         f"apt-get install {' '.join(missing)})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        run(["apt-get", "install", "-y", "-q", *missing], env=env, quiet=True)
    except SetupError:
        run(["apt-get", "update", "-q"], env=env, quiet=True)
        run(["apt-get", "install", "-y", "-q", *missing], env=env, quiet=True)


def podman_problem() -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    if shutil.which("podman") is None:
        return "podman is not installed"
    if os.geteuid() != 0:
        return "podman runs as root here (rootful storage and networks); run as root"
    try:
        proc = subprocess.run([exe("podman"), "info", "--format", "{{.Host.OCIRuntime.Name}}"], env=podman_env(),
                              capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`podman info` failed: {exc}"
    if proc.returncode != 0:
        return f"`podman info` failed: {(proc.stderr or proc.stdout).strip()[-500:]}"
    return None


def image_exists(tag: str) -> bool:
    return subprocess.run([exe("podman"), "image", "exists", tag], env=podman_env(), check=False).returncode == 0


# --- bases --------------------------------------------------------------------------------------------------
def build_rootfs(name: str, cache: Path) -> Path:
    """debootstrap one base into a tarball under ``cache``; returns the tarball."""
    packages, _ = BASES[name]
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"debian-{SUITE}-{name}.tar"
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"rootfs-{name}-", dir=cache))
    try:
        run(["debootstrap", "--variant=minbase", f"--cache-dir={debs}", f"--include={','.join(packages)}",
             SUITE, str(root), MIRROR], quiet=True)
        if name == "python":
            # A venv gives `python` and pip (Debian's python3 has neither); PATH puts it first.
            run(["chroot", str(root), "/usr/bin/python3", "-m", "venv", "/opt/python"], quiet=True)
        for rel in PRUNE:
            target = root / rel
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir()
            elif target.exists():
                target.unlink()
        tmp = tarball.with_suffix(".tmp")
        run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(tmp), "."], quiet=True)
        tmp.replace(tarball)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tarball


def ensure_base(name: str, cache: Path, fresh: bool) -> str:
    """The base image ``name``, imported from its cached tarball (debootstrapped when missing or fresh)."""
    _, tag = BASES[name]
    tarball = cache / f"debian-{SUITE}-{name}.tar"
    if fresh or not tarball.exists():
        build_rootfs(name, cache)
    elif image_exists(tag) and not fresh:
        return tag
    path = f"/opt/python/bin:{PATH}" if name == "python" else PATH
    run(["podman", "import", "--change", f"ENV=PATH={path}", "--change", "ENV=LANG=C.UTF-8",
         "--change", 'CMD=["/bin/bash"]', str(tarball), tag], env=podman_env(), quiet=True)
    return tag


# --- wheelhouse ---------------------------------------------------------------------------------------------
def build_wheelhouse(target: Path = WHEELHOUSE) -> None:
    """Every wheel an offline build installs: streamrec's dependencies (with the ``serve`` extra, which the
    worker image carries for ``streamrec serve``), its build backend, torch."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = [*pyproject["project"]["dependencies"], *pyproject["project"]["optional-dependencies"]["serve"]]
    backend = pyproject["build-system"]["requires"]
    target.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    run([*pip, "wheel", "-q", "--wheel-dir", str(target), *deps, *backend])
    torch = [*pip, "download", "-q", "--only-binary", ":all:", "--dest", str(target), f"torch=={TORCH_VERSION}"]
    if not os.environ.get("PIP_FIND_LINKS"):
        torch += ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]
    run(torch)


# --- images -------------------------------------------------------------------------------------------------
def build_kafka(base: str) -> str:
    """streamrec/kafka:<version>: docker/kafka/ plus the provisioned jars and the embedded broker's settings."""
    sys.path.insert(0, str(ROOT))
    from streamrec.stream.broker.process import server_properties
    from streamrec.stream.broker.provision import classpath
    from streamrec.stream.settings import Settings

    settings = Settings.from_env()
    libs = Path(classpath(settings).removesuffix("/*"))   # provisions the jars on first use
    tag = f"streamrec/kafka:{settings.kafka_version}"
    with tempfile.TemporaryDirectory(prefix="streamrec-kafka-") as tmp:
        ctx = Path(tmp)
        for name in ("Dockerfile", "entrypoint.sh", "kafka-broker-api-versions.sh", "log4j2.properties"):
            shutil.copy2(DOCKER / "kafka" / name, ctx / name)
        shutil.copytree(libs, ctx / "libs", ignore=shutil.ignore_patterns(".*"))
        # The embedded broker's properties; the entrypoint replaces listeners and paths for the container.
        defaults = settings.replace(broker_dir="/var/lib/kafka")
        (ctx / "server.properties").write_text(server_properties(defaults))
        run(["podman", "build", "--network", "none", "--pull=never",
             "--build-arg", f"JRE_IMAGE={base}", "--build-arg", f"KAFKA_VERSION={settings.kafka_version}",
             "-t", tag, str(ctx)], env=podman_env())
    return tag


def build_streamrec(target: str, tag: str, base: str) -> str:
    """One target of docker/Dockerfile, offline: the local Python base and docker/wheelhouse/.

    No --no-cache: a fresh base is a new image, so no layer cached from an earlier run matches it, while the
    trainer still reuses the builder stage the worker build made a minute before."""
    run(["podman", "build", "--network", "none", "--pull=never",
         "-f", str(DOCKER / "Dockerfile"), "--target", target,
         "--build-arg", f"PYTHON_IMAGE={base}", "--build-arg", "PIP_NO_INDEX=1",
         "-t", tag, str(ROOT)], env=podman_env())
    return tag


def image_size_mb(tag: str) -> float:
    out = subprocess.run([exe("podman"), "image", "inspect", "--format", "{{.Size}}", tag], env=podman_env(),
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip()) / 1e6


def build_all(fresh: bool, cache: Path | None = None) -> dict[str, float]:
    """Every step; returns {step: seconds} (and prints the image sizes)."""
    cache = cache or cache_dir()
    timings: dict[str, float] = {}
    with timed("tools", timings):
        ensure_tools()
    if (problem := podman_problem()) is not None:
        raise SetupError(f"podman cannot run containers here: {problem}")
    with timed("base python", timings):
        python_base = ensure_base("python", cache, fresh)
    with timed("base jre", timings):
        jre_base = ensure_base("jre", cache, fresh)
    with timed("wheelhouse", timings):
        build_wheelhouse()
    with timed("image kafka", timings):
        kafka = build_kafka(jre_base)
    with timed("image worker", timings):
        build_streamrec("worker", WORKER_IMAGE, python_base)
    with timed("image trainer", timings):
        build_streamrec("trainer", TRAINER_IMAGE, python_base)
    for tag in (WORKER_IMAGE, TRAINER_IMAGE, kafka):
        print(f"== size {tag}: {image_size_mb(tag):.0f} MB")
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["tools", "bases", "wheelhouse", "kafka", "images", "all"])
    parser.add_argument("--fresh", action="store_true",
                        help="debootstrap the bases again (a new base invalidates every cached layer above it)")
    args = parser.parse_args(argv)
    timings: dict[str, float] = {}
    try:
        if args.step == "all":
            timings = build_all(args.fresh)
        elif args.step == "tools":
            ensure_tools()
            if (problem := podman_problem()) is not None:
                raise SetupError(f"podman cannot run containers here: {problem}")
        elif args.step == "bases":
            for name in BASES:
                with timed(f"base {name}", timings):
                    ensure_base(name, cache_dir(), args.fresh)
        elif args.step == "wheelhouse":
            build_wheelhouse()
        elif args.step == "kafka":
            build_kafka(ensure_base("jre", cache_dir(), args.fresh))
        else:
            base = ensure_base("python", cache_dir(), args.fresh)
            build_streamrec("worker", WORKER_IMAGE, base)
            build_streamrec("trainer", TRAINER_IMAGE, base)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
