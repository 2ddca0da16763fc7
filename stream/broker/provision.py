"""Find Java and the broker's jars: an existing ``KAFKA_HOME``, or jars resolved once from Maven Central."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from streamrec.stream.errors import BrokerError
from streamrec.stream.settings import Settings

HERE = Path(__file__).parent
MIN_JAVA = 17


def java_binary() -> str:
    java = shutil.which("java")
    if not java:
        raise BrokerError(f"Java {MIN_JAVA}+ is needed to run the embedded Kafka broker and none was found on "
                          "PATH. Install a JDK (e.g. `apt-get install openjdk-17-jre-headless`) or point "
                          "STREAMREC_BOOTSTRAP_SERVERS at an existing Kafka cluster.")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise BrokerError(f"Java {MIN_JAVA}+ is needed for Kafka 4, found {major or 'an unknown version'} at "
                          f"{java}. Install a newer JDK or set STREAMREC_BOOTSTRAP_SERVERS.")
    return java


def classpath(settings: Settings, quiet: bool = False) -> str:
    """The broker classpath, provisioning the jars with Maven on first use."""
    if settings.kafka_home:
        libs = Path(settings.kafka_home) / "libs"
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"STREAMREC_KAFKA_HOME={settings.kafka_home} has no libs/kafka_2.13-*.jar; "
                              "point it at an unpacked Apache Kafka distribution.")
        return f"{libs}/*"
    libs = jar_dir(settings)
    if not (libs / ".complete").exists():
        provision(settings, libs, quiet=quiet)
    return f"{libs}/*"


def jar_dir(settings: Settings) -> Path:
    return Path(settings.home) / f"kafka-{settings.kafka_version}" / "libs"


def provision(settings: Settings, libs: Path, quiet: bool = False) -> None:
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError("Maven (`mvn`) is needed once to download the Kafka broker's jars and was not found. "
                          "Install it (`apt-get install maven`), or set STREAMREC_KAFKA_HOME to an unpacked "
                          "Kafka distribution, or STREAMREC_BOOTSTRAP_SERVERS to an existing cluster.")
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "pom.xml", work / "pom.xml")
    cmd = [mvn, "-B", "-q", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={libs}", f"-Dkafka.version={settings.kafka_version}"]
    if not quiet:
        print(f"Resolving Apache Kafka {settings.kafka_version} from Maven Central into {libs} (once)...")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BrokerError(f"Maven could not resolve org.apache.kafka:kafka_2.13:{settings.kafka_version}:\n{tail}")
    (libs / ".complete").write_text(settings.kafka_version)
