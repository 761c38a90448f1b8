# syntax=docker/dockerfile:1
# The playground's image: uvicorn or daphne (web), Celery worker and beat all run from it
# (docker-compose.yml picks the command). Build: docker build -t reflection-playground .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the locked dependencies (requirements/runtime.txt), in a virtual environment ---
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A compiler for any locked dependency without a wheel for this platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only the lock: this layer is rebuilt when the dependencies change, not the code. Every
# version is the one `make install` takes (`make lock` writes both) and every file is checked
# against its hash; the sources run from /app (PYTHONPATH), so the project is not installed.
COPY requirements/runtime.txt ./
RUN pip install --upgrade pip \
    && pip install --require-hashes -r runtime.txt

# --- runtime: the virtual environment and the source, run as an unprivileged user ----------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    VAR_DIR=/app/var \
    STATIC_ROOT=/app/staticfiles
# Fonts for shared conversations' link-preview pictures (PREVIEW_FONTS): Latin and Chinese.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 playground \
    && useradd --system --uid 10001 --gid playground --home-dir /app --shell /usr/sbin/nologin playground
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY manage.py pyproject.toml ./
COPY inference ./inference
COPY playground ./playground
COPY templates ./templates
# The visitors' pages in Chinese: the compiled catalogs (no gettext in the image).
COPY locale ./locale
COPY static ./static
COPY deploy ./deploy
# Static files are collected once, here, with the production storage (hashed, compressed) and
# served by WhiteNoise. Production settings need a strong secret to load; this throwaway one
# exists only for this command and is not kept in the image (nor are the other values).
RUN PRODUCTION=1 \
    SECRET_KEY=collectstatic-only-throwaway-key-never-used-at-runtime-0123456789 \
    ALLOWED_HOSTS=localhost \
    CSRF_TRUSTED_ORIGINS=https://localhost \
    DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 \
    REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput -v 0 \
    && rm -f /tmp/collectstatic.sqlite3 \
    && mkdir -p /app/var \
    && chown playground:playground /app/var
USER playground
EXPOSE 8000
# Liveness of the web server, asked the way the proxy asks (deploy/healthcheck.py): no curl needed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py"]
# uvicorn, or daphne with ASGI_SERVER=daphne, as `make run` serves (deploy/asgi_server.py).
CMD ["python", "-m", "deploy.asgi_server", "--host", "0.0.0.0", "--port", "8000"]
