# RideShare: one image for every part (users, rides, orchestrator, worker, gateway config).
#
#   docker build -t rideshare .                      # from the official python:3.11-slim
#   docker build --build-arg BASE_IMAGE=debian:bookworm-slim -t rideshare .
#
# The first argument picks the part (see docker/entrypoint.py): users, rides, orchestrator,
# worker ..., gateway-config DIR, or any command.
#
# Wheels: when docker/wheels/ holds wheels (scripts/docker-setup.sh wheels puts them there), the
# image installs from them alone (no index needed); otherwise pip uses PyPI as usual.

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
ENV LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# Every worker runs its own PostgreSQL server inside its container: Debian's PostgreSQL 15 (no
# cluster of its own, no service started at install). A base without Python 3 and venv (Debian
# itself, a debootstrapped one) gets Debian's.
RUN set -eu; \
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
    mkdir -p /etc/postgresql-common; \
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf; \
    packages="postgresql-15"; \
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
        packages="$packages python3 python3-venv"; \
    fi; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confold $packages; \
    rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d; \
    groupadd --system --gid 10001 rideshare; \
    useradd --system --uid 10001 --gid rideshare --home-dir /var/lib/rideshare \
        --create-home --shell /usr/sbin/nologin rideshare; \
    install -d -o rideshare -g rideshare /var/lib/rideshare/run /var/lib/rideshare/gateway; \
    install -d -m 0700 -o rideshare -g rideshare /var/lib/rideshare/pgdata

# Dependencies in their own layer: it is rebuilt only when pyproject.toml or the wheels change.
FROM base AS deps
COPY pyproject.toml /build/pyproject.toml
COPY docker/requirements.py /build/requirements.py
COPY docker/wheels/ /build/wheels/
RUN set -eu; \
    python3 -m venv /opt/venv; \
    python3 /build/requirements.py /build/pyproject.toml >/build/requirements.txt; \
    if ls /build/wheels/*.whl >/dev/null 2>&1; then \
        set -- --no-index --find-links /build/wheels; \
    fi; \
    /opt/venv/bin/pip install -q "$@" -r /build/requirements.txt

FROM base
COPY --from=deps /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/var/lib/rideshare \
    RIDESHARE_HOST=0.0.0.0 \
    RIDESHARE_RUN_DIR=/var/lib/rideshare/run \
    RIDESHARE_PG_BIN_DIR=/usr/lib/postgresql/15/bin \
    RIDESHARE_PG_TEMPLATE_DIR=/opt/rideshare/pg-template
WORKDIR /app
COPY docker/entrypoint.py /usr/local/bin/rideshare-entrypoint
COPY docker/healthcheck.py /usr/local/bin/rideshare-healthcheck
# The project itself: a small layer on top of the dependencies (README.md: its description).
COPY pyproject.toml README.m[d] /app/
COPY src/ /app/src/
RUN set -eu; \
    [ -f /app/README.md ] || echo "RideShare" >/app/README.md; \
    pip install -q --no-deps --no-build-isolation --no-index /app; \
    rm -rf /app/build /app/src; \
    chmod 0755 /usr/local/bin/rideshare-entrypoint /usr/local/bin/rideshare-healthcheck; \
    python -c 'import rideshare.orchestrator.api, rideshare.worker.main, docker'; \
    install -d -o rideshare -g rideshare /opt/rideshare; \
    setpriv --reuid=rideshare --regid=rideshare --init-groups \
        /usr/lib/postgresql/15/bin/initdb -D /opt/rideshare/pg-template -U rideshare \
        --auth=trust --encoding=UTF8 --locale=C.UTF-8 --wal-segsize=4 --no-instructions >/dev/null

USER rideshare
EXPOSE 8080 8081 8082 8090
ENTRYPOINT ["/usr/local/bin/rideshare-entrypoint"]
CMD ["--help"]
