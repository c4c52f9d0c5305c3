# One image for every service: the container runs `smartgym serve SERVICE`.
FROM python:3.11-slim
RUN useradd --uid 10001 --create-home smartgym
WORKDIR /app
COPY pyproject.toml README.md ./
COPY common ./common
COPY smartgym ./smartgym
COPY gateway ./gateway
COPY auth ./auth
COPY access ./access
COPY facemodel ./facemodel
COPY helper ./helper
COPY search ./search
COPY branch_owner ./branch_owner
COPY monitoring ./monitoring
COPY notification ./notification
COPY mlops ./mlops
COPY running ./running
# The screens ship built (web/dist is committed): no node in the image.
COPY web/__init__.py ./web/__init__.py
COPY web/dist ./web/dist
RUN pip install --no-cache-dir .
USER 10001
ENTRYPOINT ["smartgym"]
CMD ["up"]
