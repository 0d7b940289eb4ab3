FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py ./
COPY webhooks ./webhooks
RUN pip install --no-cache-dir '.[flower]'
# Celery refuses nothing as root, but a delivery worker has no reason to be root.
RUN useradd --create-home webhooks
USER webhooks
CMD ["celery", "-A", "webhooks", "worker", "--loglevel=INFO", "--concurrency=8"]
