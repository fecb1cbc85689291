# syntax=docker/dockerfile:1
# The gateway image: `docker build -t llm-gateway .`
#
# Two stages: the builder turns the project and its dependencies into wheels and installs them into
# a virtual environment; the runtime stage copies only that venv onto a fresh python:3.11-slim, so
# no pip cache, build tools or source tree ship. It runs as an unprivileged numeric user (10001),
# which Kubernetes can verify for `runAsNonRoot`, and works on a read-only root filesystem.
#
# The same image runs every verb: `gateway serve` (the default) and `gateway mock-upstream ...`
# (the compose stack's fake model versions). The config is mounted at /etc/gateway/config.yaml and
# must set `listen.host: 0.0.0.0`, or the gateway is unreachable from outside the container.
#
# Stopping: SIGTERM starts a graceful drain (`drain.window_s`: /readyz answers 503 but requests are
# still served; then `drain.deadline_s` for requests in flight). Give the container at least
# window_s + deadline_s + a few seconds before SIGKILL (`docker stop -t`, compose
# `stop_grace_period`, Kubernetes `terminationGracePeriodSeconds`).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first, against a stub package, so editing the code does not rebuild them (every
# dependency ships manylinux wheels, so no compiler is needed); then the project's own wheel.
COPY pyproject.toml README.md ./
RUN mkdir gateway && touch gateway/__init__.py \
 && /opt/venv/bin/pip wheel --wheel-dir /wheels . \
 && rm -rf gateway build *.egg-info /wheels/llm_version_gateway-*.whl
COPY gateway ./gateway
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-index --find-links /wheels llm-version-gateway \
 && /opt/venv/bin/gateway --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHCHECK_URL=http://127.0.0.1:8080/healthz
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin gateway \
 && mkdir -p /etc/gateway
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
# Liveness only (/healthz): a draining gateway is alive but not ready. No curl in slim images, so
# the probe is Python's urllib; HEALTHCHECK_URL lets the mock-upstream containers point it elsewhere.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=2)"]
ENTRYPOINT ["gateway"]
CMD ["serve", "--config", "/etc/gateway/config.yaml"]
