# hubmeter: build a wheel, install it into a clean image, run as a non-root user.
#   docker build -t hubmeter .
#   docker run --rm -e HUBMETER_DATABASE_URL=postgresql://... hubmeter db upgrade   # migrations
#   docker run -p 8000:8000 -e HUBMETER_DATABASE_URL=... -e HUBMETER_CONFIG=/etc/hubmeter/hubmeter.yaml \
#       -v ./hubmeter.yaml:/etc/hubmeter/hubmeter.yaml:ro hubmeter                    # the service

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/hubmeter && /opt/hubmeter/bin/pip install --no-cache-dir --upgrade pip
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY jobs ./jobs
COPY migrations ./migrations
RUN /opt/hubmeter/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 hubmeter \
    && useradd --system --uid 10001 --gid hubmeter --home-dir /var/lib/hubmeter --create-home hubmeter
COPY --from=build /opt/hubmeter /opt/hubmeter
ENV PATH=/opt/hubmeter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HUBMETER_HOST=0.0.0.0 \
    HUBMETER_PORT=8000 \
    HUBMETER_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/hubmeter
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["hubmeter"]
CMD ["serve"]
