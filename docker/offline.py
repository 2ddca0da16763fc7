"""Build streamrec's images with podman on a machine that reaches no image registry, with no network in
any build: the bases from Debian's packages (debootstrap), Python wheels from a host wheelhouse, the Kafka
jars from the broker provisioning. Run as root on Debian or Ubuntu (podman's storage is root's):

    .venv/bin/python docker/offline.py all          # what `make images` runs
    .venv/bin/python docker/offline.py all --fresh  # new Debian bases, so every layer is built again

Steps (each one also a subcommand):

    tools      apt-get install podman runc podman-compose debootstrap, only those missing
    bases      localhost/streamrec/base-python:bookworm (python3 in a venv at /opt/python) and
               localhost/streamrec/base-jre:bookworm (openjdk-17-jre-headless), from one
               `debootstrap --variant=minbase bookworm` copied once, apt-get in each copy; the root file
               systems are cached as tarballs under ~/.cache/streamrec/images and reused until --fresh
    wheelhouse docker/wheelhouse/: exactly the wheels the images install (one `pip wheel`): every
               dependency, setuptools and wheel, torch's CPU build (from PIP_FIND_LINKS, e.g.
               ../shared/wheels, or the PyTorch CPU index); a CUDA build stops it
    kafka      streamrec/kafka:<version> from docker/kafka/ and the provisioned jars
    images     streamrec/worker:dev and streamrec/trainer:dev (FROM the worker, plus torch) from
               docker/Dockerfile (--network none; the wheelhouse bind-mounted, never a layer)

`all` makes the wheelhouse while debootstrap runs, and the JRE base and the Kafka image while the worker
and trainer images build.
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
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
def _chroot_apt(root: Path, packages: Sequence[str]) -> None:
    """apt-get install ``packages`` into the Debian root ``root`` (over plain HTTP from MIRROR, with /proc
    mounted for the maintainer scripts)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH=PATH)
    run(["mount", "-t", "proc", "proc", str(root / "proc")], quiet=True)
    try:
        run(["chroot", str(root), "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            env=env, quiet=True)
    finally:
        subprocess.run([exe("umount"), str(root / "proc")], check=False)


def _tar(root: Path, tarball: Path) -> None:
    """``root`` as a tarball, less documentation, translations and apt's lists and caches."""
    excludes = [f"--exclude=./{rel}/*" for rel in PRUNE]
    tmp = tarball.with_suffix(".tmp")
    run(["tar", "--numeric-owner", *excludes, "-C", str(root), "-cf", str(tmp), "."], quiet=True)
    tmp.replace(tarball)


# dpkg skips its fsync calls while the roots are built (they are tarred right after; nothing to recover).
UNSAFE_IO = "etc/dpkg/dpkg.cfg.d/streamrec-unsafe-io"


def _tarball(cache: Path, name: str) -> Path:
    return cache / f"debian-{SUITE}-{name}.tar"


def debootstrap(work: Path, cache: Path, timings: dict[str, float]) -> dict[str, Path]:
    """One ``debootstrap --variant=minbase`` (with apt's package lists) under ``work``, copied once:
    {"python": root, "jre": root}, each to be finished by :func:`finish_root`."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PATH=PATH)
    minbase, jre = work / "python", work / "jre"
    with timed("debootstrap (download, unpack)", timings):
        run(["debootstrap", "--foreign", "--variant=minbase", f"--cache-dir={debs}", SUITE, str(minbase),
             MIRROR], quiet=True)
    (minbase / UNSAFE_IO).parent.mkdir(parents=True, exist_ok=True)
    (minbase / UNSAFE_IO).write_text("force-unsafe-io\n")
    with timed("debootstrap (install)", timings):
        run(["chroot", str(minbase), "/debootstrap/debootstrap", "--second-stage"], env=env, quiet=True)
    (minbase / "etc/apt/sources.list").write_text(f"deb {MIRROR} {SUITE} main\n")
    with timed("apt-get update, copy", timings):
        run(["chroot", str(minbase), "apt-get", "update", "-q", "-o", "Acquire::Languages=none"], env=env,
            quiet=True)
        run(["cp", "-a", str(minbase), str(jre)], quiet=True)
    return {"python": minbase, "jre": jre}


def finish_root(name: str, root: Path, cache: Path, timings: dict[str, float]) -> None:
    """apt-get the base's packages into ``root`` (python: a venv at /opt/python too), tar it into the cache."""
    with timed(f"base {name}: apt-get, tar", timings):
        _chroot_apt(root, BASES[name][0])
        if name == "python":
            # A venv gives `python` and pip (Debian's python3 has neither); PATH puts it first.
            run(["chroot", str(root), "/usr/bin/python3", "-m", "venv", "/opt/python"], quiet=True)
        (root / UNSAFE_IO).unlink()
        _tar(root, _tarball(cache, name))


def import_base(name: str, cache: Path) -> str:
    _, tag = BASES[name]
    path = f"/opt/python/bin:{PATH}" if name == "python" else PATH
    run(["podman", "import", "--change", f"ENV=PATH={path}", "--change", "ENV=LANG=C.UTF-8",
         "--change", 'CMD=["/bin/bash"]', str(_tarball(cache, name)), tag], env=podman_env(), quiet=True)
    return tag


def build_rootfs(cache: Path) -> dict[str, float]:
    """Both tarballs from one debootstrap, one after the other; returns the seconds of each part."""
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
    timings: dict[str, float] = {}
    try:
        for name, root in debootstrap(work, cache, timings).items():
            finish_root(name, root, cache, timings)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return timings


def ensure_bases(cache: Path, fresh: bool) -> dict[str, str]:
    """Both base images, imported from the cached tarballs (debootstrapped when missing or fresh)."""
    if fresh or not all(_tarball(cache, name).exists() for name in BASES):
        build_rootfs(cache)
    elif all(image_exists(tag) for _, tag in BASES.values()):
        return {name: tag for name, (_, tag) in BASES.items()}
    return {name: import_base(name, cache) for name in BASES}


# --- wheelhouse ---------------------------------------------------------------------------------------------
# Never in the wheelhouse: CUDA builds of torch bring these (gigabytes); the images take the CPU build.
FORBIDDEN = ("nvidia_", "nvidia-", "triton-", "cuda_", "cuda-")


def build_wheelhouse(target: Path = WHEELHOUSE) -> list[str]:
    """Exactly the wheels an offline build installs, and nothing left from earlier runs: streamrec's
    dependencies (with the ``serve`` extra, which the worker image carries for ``streamrec serve``), its build
    backend, torch (the CPU build: from PIP_FIND_LINKS, e.g. ../shared/wheels, else the PyTorch CPU index) and
    torch's dependencies. One resolution (``pip wheel``: built wheels are reused from pip's cache). Returns the
    file names."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = [*pyproject["project"]["dependencies"], *pyproject["project"]["optional-dependencies"]["serve"]]
    backend = pyproject["build-system"]["requires"]
    target.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=".new-", dir=target))
    try:
        cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--only-binary", "torch", "--wheel-dir", str(fresh),
               *deps, *backend, f"torch=={TORCH_VERSION}"]
        if not os.environ.get("PIP_FIND_LINKS"):
            cmd += ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]
        run(cmd)
        names = sorted(p.name for p in fresh.glob("*.whl"))
        bad = [n for n in names if n.lower().startswith(FORBIDDEN) or (n.startswith("torch-") and "+cpu" not in n)]
        if bad:
            raise SetupError(f"the wheelhouse would hold a CUDA build of torch ({', '.join(bad[:4])}); put the CPU "
                             "wheel in PIP_FIND_LINKS (e.g. ../shared/wheels) or let pip reach "
                             "https://download.pytorch.org/whl/cpu")
        for old in target.glob("*.whl"):
            old.unlink()
        for name in names:
            (fresh / name).replace(target / name)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    size = sum((target / n).stat().st_size for n in names) / 1e6
    print(f"== wheelhouse: {len(names)} wheels, {size:.0f} MB", flush=True)
    return names


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
    """Every step; returns {step: seconds} (and prints the image sizes). Network-bound steps run beside
    CPU-bound ones: the wheelhouse (pip) while debootstrap runs, and the JRE base (apt-get, tar, import)
    and the Kafka image while the worker and trainer images build on the python base."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with timed("tools", timings):
        ensure_tools()
    if (problem := podman_problem()) is not None:
        raise SetupError(f"podman cannot run containers here: {problem}")
    kafka_tag = f"streamrec/kafka:{_kafka_version()}"
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            wheels = pool.submit(_timed_call, "wheelhouse", timings, build_wheelhouse)
            if fresh or not all(_tarball(cache, name).exists() for name in BASES):
                roots = debootstrap(work, cache, timings)
                finish_root("python", roots["python"], cache, timings)
                with timed("import base python", timings):
                    python_base = import_base("python", cache)

                def jre_side() -> str:
                    finish_root("jre", roots["jre"], cache, timings)
                    with timed("import base jre", timings):
                        import_base("jre", cache)
                    with timed("image kafka", timings):
                        return build_kafka(BASES["jre"][1])
                wheels.result()
                side = pool.submit(jre_side)
            else:
                bases = ensure_bases(cache, fresh=False)
                python_base = bases["python"]
                wheels.result()
                side = pool.submit(_timed_call, "image kafka", timings, build_kafka, bases["jre"])
            with timed("image worker", timings):
                build_streamrec("worker", WORKER_IMAGE, python_base)
            with timed("image trainer", timings):
                build_streamrec("trainer", TRAINER_IMAGE, python_base)
            kafka_tag = side.result()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for tag in (WORKER_IMAGE, TRAINER_IMAGE, kafka_tag):
        print(f"== size {tag}: {image_size_mb(tag):.0f} MB")
    return timings


def _timed_call(label: str, timings: dict[str, float], fn: Callable[..., T], *args: Any) -> T:
    with timed(label, timings):
        return fn(*args)


def _kafka_version() -> str:
    sys.path.insert(0, str(ROOT))
    from streamrec.stream.settings import Settings

    return Settings.from_env().kafka_version


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
            with timed("bases", timings):
                ensure_bases(cache_dir(), args.fresh)
        elif args.step == "wheelhouse":
            build_wheelhouse()
        elif args.step == "kafka":
            build_kafka(ensure_bases(cache_dir(), args.fresh)["jre"])
        else:
            base = ensure_bases(cache_dir(), args.fresh)["python"]
            build_streamrec("worker", WORKER_IMAGE, base)
            build_streamrec("trainer", TRAINER_IMAGE, base)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
