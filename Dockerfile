# syntax=docker/dockerfile:1
# modelarts-bot: `docker build -t modelarts-bot .` then
#   docker run --env-file .env -v "$PWD/roles.yml:/etc/modelarts-bot/roles.yml:ro" -p 3000:3000 modelarts-bot
# HTTP mode (gunicorn) by default; set SLACK_APP_TOKEN for Socket Mode (no public URL needed).

# The base of both stages. To pin it by digest, `make pin-base` writes
# python:3.11-slim@sha256:<digest> here (it asks Docker Hub: docs/deploy.md, "The container image").
ARG PYTHON_IMAGE=python:3.11-slim

# -- build: every locked dependency as a wheel, its hash checked (requirements.lock, `make lock`;
# all have manylinux wheels, so pip keeps the downloaded files and no compiler is needed) --------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY bot ./bot
RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements.lock \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# -- run: install from those wheels only, as a non-root user ----------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    ROLES_FILE=/etc/modelarts-bot/roles.yml
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin bot
# The wheels are bind-mounted from the build stage, so they never become a layer of this image.
# The lock again, with --require-hashes: each wheel's hash is checked once more; then the project
# alone (--no-deps: nothing that is not in the lock). No version pin on it (DL3013): the only
# version there is the wheel built above.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/src/requirements.lock,target=/tmp/requirements.lock \
    pip install --no-cache-dir --no-index --find-links /wheels --require-hashes \
        -r /tmp/requirements.lock \
    && pip install --no-cache-dir --no-index --find-links /wheels --no-deps modelarts-bot
WORKDIR /app
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]
CMD ["modelarts-bot", "serve"]
