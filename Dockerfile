# cronbus: one image for every worker role and for the demo downstream API.
#   docker build -t cronbus:local .
#   docker run --rm cronbus:local cronbus worker --role ingest
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY agents ./agents
COPY clients ./clients
COPY families ./families
# the demo extra: the development GraphQL API the compose file runs as the demo downstream
RUN pip install '.[demo]' \
 && useradd --system --uid 10001 --home-dir /var/lib/cronbus --create-home cronbus

USER cronbus
ENV CRONBUS_DATA_DIR=/var/lib/cronbus \
    CRONBUS_WEB_HOST=0.0.0.0 \
    CRONBUS_WEB_PORT=6066 \
    CRONBUS_LOG_FORMAT=json
EXPOSE 6066
# exec form: the worker is PID 1 and gets SIGTERM itself, so it drains before it stops
CMD ["cronbus", "worker"]
