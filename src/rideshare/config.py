"""Every address and tunable of RideShare, in one typed place.

Each field is read from an environment variable named ``RIDESHARE_<FIELD>`` (for example
``RIDESHARE_ORCHESTRATOR_PORT``). The README's settings table lists them all.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RIDESHARE_", extra="ignore",
                                      populate_by_name=True)

    @property
    def amqp_url_list(self) -> list[str]:
        return [u.strip() for u in self.amqp_urls.split(",") if u.strip()]

    # Where each part listens (host and port), and how the parts find each other.
    host: str = "127.0.0.1"
    gateway_port: int = 8080
    users_port: int = 8081
    rides_port: int = 8082
    orchestrator_port: int = 8090
    gateway_url: str = "http://127.0.0.1:8080"
    orchestrator_url: str = "http://127.0.0.1:8090"
    public_name: str = "rideshare"

    # Backing servers: one RabbitMQ node or several (comma-separated; a connection that fails
    # moves to the next), one ZooKeeper server or an ensemble (comma-separated host:port).
    # RIDESHARE_AMQP_URL, the older name, is read too.
    amqp_urls: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/",
        validation_alias=AliasChoices("RIDESHARE_AMQP_URLS", "RIDESHARE_AMQP_URL", "amqp_urls"))
    zk_hosts: str = "127.0.0.1:2181"
    # Quorum queues (replicated with Raft) for writeQ, readQ, deadQ and the sync queues: "true",
    # "false", or "auto": when more than one broker URL is given, or its host name resolves to
    # more than one address (a cluster behind one name).
    quorum_queues: str = "auto"
    # The benchmark's direct baseline only: the workers never use this server.
    pg_dsn: str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

    # Names, so that several stacks (for example test runs) can share one broker and ZooKeeper.
    queue_prefix: str = ""
    zk_root: str = "/rideshare"
    run_dir: Path = Path(".run")

    # The workers' own PostgreSQL servers (worker/pgserver.py): one data directory each, under
    # data_dir (empty: <run_dir>/data, or /var/lib/rideshare/... when the servers' user cannot
    # reach that); binaries from pg_bin_dir (empty: the newest under /usr/lib/postgresql); run as
    # pg_user when the stack runs as root; copied from pg_template_dir (empty: made with initdb
    # under data_dir).
    data_dir: Path | None = None
    pg_bin_dir: str = ""
    pg_user: str = "postgres"
    pg_template_dir: str = ""

    # Behaviour.
    timezone: str = "UTC"
    write_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    read_wait_s: float = 5.0
    batch_size: int = 256
    write_ids_kept: int = 1_000_000  # log positions a write id is remembered for (0: forever)
    write_ids_max_age_s: float = 7 * 24 * 3600.0  # and for how long at most (0: no age bound)
    zk_session_timeout_s: float = 6.0
    amqp_heartbeat_s: int = 2  # a silent broker connection is given up after about 3x this
    broker_grace_s: float = 10.0  # a worker cut off from the broker longer than this leaves
    db_deadline_s: float = 10.0  # a batch its own database cannot finish by then ends the worker
    sync_queue_max_length: int = 100_000  # batches a slave's sync queue holds (drop-head beyond)
    dead_letter_max_length: int = 10_000  # messages set aside in deadQ (drop-head beyond)
    worker_start_timeout_s: float = 60.0
    reconcile_interval_s: float = 0.5
    # Kill a worker whose ZooKeeper session is gone (it is fenced anyway; this frees it at once
    # where the orchestrator can reach it). Off: the worker leaves by itself, as across hosts.
    kill_lost_workers: bool = True

    # Scaling (docs/dbaas.md, "Scaling").
    scale_interval: float = 120.0
    reads_per_slave: int = 20
    max_slaves: int = 10
    initial_slaves: int = 1

    # How workers are run: "process" (local child processes) or "docker".
    runtime: str = "process"
    # The docker runtime (RIDESHARE_RUNTIME=docker). Empty: taken from the orchestrator's own
    # container (its image, its first network, its compose project).
    docker_url: str = ""  # Docker Engine address; empty: DOCKER_HOST or the local socket
    worker_image: str = ""  # the image worker containers run
    docker_network: str = ""  # the network worker containers join ("host": the host's own)
    docker_stack: str = ""  # labels and name prefix of this stack's worker containers

    # Tests only (the fault campaign): a JSON file holding a list of per-worker settings; the
    # process runtime gives the first entry to the next worker it starts, and removes it. An
    # entry may hold "data_dir" (its data directory, say on a small tmpfs).
    test_worker_overrides: str = ""

    # Processes per HTTP service (uvicorn workers).
    service_processes: int = 1


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
