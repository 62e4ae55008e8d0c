# The AM-QADF Live dashboard (see docker-compose.yml for the servers it talks to).
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

RUN useradd --create-home --uid 1000 app
USER app

ENV AMQADF_KAFKA=kafka:29092 \
    AMQADF_REDIS_URL=redis://redis:6379/0 \
    AMQADF_MONGO_URI=mongodb://mongo:27017/am_qadf

EXPOSE 5006
CMD ["panel", "serve", "dashboard/app.py", "--address", "0.0.0.0", "--port", "5006", "--allow-websocket-origin=*"]
