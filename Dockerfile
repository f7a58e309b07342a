# A rillet stream worker. Build: docker build -t rillet .
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
COPY sinks ./sinks
COPY replay ./replay
COPY examples ./examples
RUN pip install --no-cache-dir ".[dask]" && useradd --create-home rillet && mkdir -p /data && chown rillet /data
USER rillet
ENV RILLET_WEB_HOST=0.0.0.0 RILLET_OFFLINE_PATH=/data/offline RILLET_STATE_DIR=/data/state
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --retries=6 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=2)"
ENTRYPOINT ["rillet"]
CMD ["worker", "--features", "examples/payments/features.py"]
