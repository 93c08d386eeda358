# Test-only stand-in for the `mongo` service: SecantusDB, the embedded MongoDB-wire server
# `make run` uses, in a container. The mongo image and MongoDB server binaries cannot be had on
# the CI machines (no image registry); everything else in the stack is the users' images.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
COPY pyproject.toml /tmp/pyproject.toml
# The version pyproject.toml pins, so the test runs the server `make run` and the tests use.
RUN python -m venv /opt/venv \
    && pin="$(python -c 'import re,tomllib; d=tomllib.load(open("/tmp/pyproject.toml","rb"))["project"]["dependencies"]; print(next(x for x in d if re.match(r"secantusdb\b", x)))')" \
    && /opt/venv/bin/pip install "$pin" \
    && rm /tmp/pyproject.toml \
    && mkdir -p /data/db
ENV PATH=/opt/venv/bin:$PATH
EXPOSE 27017
CMD ["secantusd-py", "--host", "0.0.0.0", "--port", "27017", "--storage-path", "/data/db", "--standalone", "--log-level", "WARNING"]
