"""The embedded Apache Kafka's software: the broker version pinned in
``infra/embedded/kafka-broker/pom.xml``, its jars (``make kafka-jars`` copies them from Maven
Central once, into ``.simfleet/apache-kafka/<version>/lib``) and the machine's Java 17+, with the
options every JVM of it runs with."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from infra.embedded.service import EmbeddedInfraError

ROOT = Path(__file__).resolve().parents[2]
POM = Path(__file__).resolve().parent / "kafka-broker" / "pom.xml"
LOG_CONFIG = POM.with_name("log4j2.properties")
JVM_OPTIONS = (
    "-Xms64m",
    "-Xmx512m",
    # one GC thread set instead of G1's per-core pools: four JVMs share two cores
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    f"-Dlog4j2.configurationFile={LOG_CONFIG}",
)
MISSING_TOOLS = (
    "Apache Kafka needs Java 17+ and Maven: as root run "
    "'apt-get install -y openjdk-17-jre-headless maven' (Debian), then 'make kafka-jars'; "
    "or set EMBEDDED_BROKER=tansu, or KAFKA_BOOTSTRAP_SERVERS=host:port"
)


def kafka_version() -> str:
    """The broker version pinned in the pom (``kafka.version``)."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if match is None:
        raise EmbeddedInfraError(f"no <kafka.version> in {POM}")
    return match.group(1).strip()


def jars_dir() -> Path:
    """Where ``make kafka-jars`` puts the broker's classpath (``KAFKA_JARS_DIR`` overrides)."""
    if configured := os.environ.get("KAFKA_JARS_DIR"):
        return Path(configured)
    return ROOT / ".simfleet" / "apache-kafka" / kafka_version() / "lib"


def java_path() -> str | None:
    if home := os.environ.get("JAVA_HOME"):
        candidate = Path(home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("java")


def java_command(java: str, main_class: str, *args: str) -> list[str]:
    """A command line that runs ``main_class`` of the broker's classpath."""
    return [java, *JVM_OPTIONS, "-cp", f"{jars_dir()}/*", main_class, *args]


def available() -> bool:
    """True when Java and the broker jars are here (the embedded broker can be Apache Kafka)."""
    lib = jars_dir()
    return java_path() is not None and any(lib.glob("kafka_2.13-*.jar"))


def fetch_jars() -> Path:
    """Copies the pinned broker and its runtime dependencies from Maven Central (once)."""
    lib = jars_dir()
    if any(lib.glob("kafka_2.13-*.jar")):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EmbeddedInfraError(MISSING_TOOLS)
    partial = lib.with_name("lib.partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"]
    cmd += ["-DincludeScope=runtime", f"-DoutputDirectory={partial}"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise EmbeddedInfraError(
            f"Maven could not fetch Apache Kafka {kafka_version()} ({' '.join(cmd)}):\n"
            f"{(done.stdout + done.stderr)[-3000:]}"
        )
    partial.replace(lib)
    return lib
