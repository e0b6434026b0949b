# syntax=docker/dockerfile:1
# modelarts-bot: `docker build -t modelarts-bot .` then
#   docker run --env-file .env -v "$PWD/roles.yml:/etc/modelarts-bot/roles.yml:ro" -p 3000:3000 modelarts-bot
# HTTP mode (gunicorn) by default; set SLACK_APP_TOKEN for Socket Mode (no public URL needed).

# -- build: every dependency as a wheel (all have manylinux wheels: no compiler is needed) ----
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# -- run: install from those wheels only, as a non-root user ----------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    ROLES_FILE=/etc/modelarts-bot/roles.yml
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin bot
# The wheels are bind-mounted from the build stage, so they never become a layer of this image.
# No version pin (DL3013): the only versions there are those of the wheels built above.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels modelarts-bot
WORKDIR /app
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]
CMD ["modelarts-bot", "serve"]
