# bgtasks: one image for every role (`bgtasks api`, `bgtasks worker`, `bgtasks migrate`, the CLI).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY service ./service
COPY actors ./actors
COPY migrations ./migrations
RUN pip install . && useradd --create-home --uid 10001 bgtasks

USER bgtasks
EXPOSE 8000
# Settings come from the environment (DATABASE_URL, BGTASKS_*, OPENAI_*): docs/deployment.md.
CMD ["bgtasks", "api", "--host", "0.0.0.0", "--port", "8000"]
