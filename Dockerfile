# The AM-QADF Live image: the dashboard by default; docker-compose.yml runs the same
# image as the fleet's workers (`am-qadf worker`) and simulator (`am-qadf simulate`).
FROM python:3.11-slim

# VTK (behind pyvista) loads the X11/OpenGL client libraries even when rendering in the browser.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libxrender1 libxext6 libx11-6 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Only what the package needs: local caches, venvs and service builds stay out of the image.
COPY pyproject.toml README.m[d] ./
COPY am_qadf ./am_qadf
COPY dashboard ./dashboard
COPY assets ./assets
RUN pip install ".[dashboard]"

# /data (a volume in docker-compose.yml) keeps the generated log-in and cookie secret.
RUN useradd --create-home --uid 1000 app && mkdir /data && chown app /data
USER app

# Redis and MongoDB need credentials: docker-compose.yml passes AMQADF_REDIS_URL and
# AMQADF_MONGO_URI with the passwords from .env. Without them the image keeps its
# history in /data.
ENV AMQADF_KAFKA=kafka:29092 \
    AMQADF_DATA_DIR=/data \
    AMQADF_PUBLIC_ORIGIN=localhost:5006

EXPOSE 5006
# Log-in required (a generated one unless AMQADF_USERS_FILE is given), cookie secret,
# websocket open to AMQADF_PUBLIC_ORIGIN only, /metrics beside the pages (optionally
# behind AMQADF_METRICS_TOKEN): see dashboard/container.py.
CMD ["python", "-m", "dashboard.container"]
