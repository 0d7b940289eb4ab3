FROM python:3.11-slim
WORKDIR /app
# The dependencies first, from pyproject.toml alone: a change to the code reuses
# this layer instead of installing every dependency again.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['flower']))" > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt
COPY README.md celeryconfig.py ./
COPY webhooks ./webhooks
RUN pip install --no-cache-dir --no-deps '.[flower]'
# Celery refuses nothing as root, but a delivery worker has no reason to be root.
RUN useradd --create-home webhooks
USER webhooks
CMD ["celery", "-A", "webhooks", "worker", "--loglevel=INFO", "--concurrency=8"]
