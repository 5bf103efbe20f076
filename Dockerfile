# flowrun-operator image: `docker build -t flowrun-operator:0.1.0 .` (see docs/install.md).
#
# Two stages: the builder makes a wheel of this project and installs it, with its dependencies,
# into a virtual environment at /opt/flowrun; the final image gets only that environment. The
# final stage runs nothing at build time: no compiler, no pip cache, no build tree.
#
# At run time the container needs no writable path but /tmp (the chart mounts an emptyDir
# there), so it runs with a read-only root filesystem as the numeric non-root user 65532.

ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# The last two lines name the user the image runs as (the final stage copies /etc/passwd and
# /etc/group): without an entry for it, getpass.getuser(), which kopf calls for its identity,
# raises "uid not found" and the operator exits at start.
# The venv gets no pip of its own: the builder's pip installs into it (`--python`), and pip
# compiles the bytecode there, so the read-only image never needs to write a .pyc.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/flowrun \
    && pip --python /opt/flowrun/bin/python install --no-cache-dir --compile /wheels/*.whl \
    && /opt/flowrun/bin/flowrun --help >/dev/null \
    && echo "flowrun:x:65532:65532:flowrun-operator:/tmp:/usr/sbin/nologin" >> /etc/passwd \
    && echo "flowrun:x:65532:" >> /etc/group

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="flowrun-operator" \
      org.opencontainers.image.description="Kubernetes operator that runs FlowRuns: DAGs of task pods with temporary resources that are always cleaned up" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
ENV PATH=/opt/flowrun/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
COPY --from=builder /opt/flowrun /opt/flowrun
COPY --from=builder /etc/passwd /etc/group /etc/
USER 65532:65532
WORKDIR /tmp
# 8080: kopf's liveness endpoint (--liveness); 9090: Prometheus metrics (--metrics-port).
EXPOSE 8080 9090
ENTRYPOINT ["flowrun", "run"]
CMD ["--all-namespaces"]
