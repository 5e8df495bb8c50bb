# bnscope dashboard in a container. It binds 0.0.0.0 inside, so it needs an access token:
#   docker build --build-arg TORCH_INDEX="$TORCH_CPU_INDEX" -t bnscope .
#   docker run -p 8000:8000 -e BNSCOPE_TOKEN="$(openssl rand -hex 16)" -v bnscope-data:/data bnscope
# TORCH_CPU_INDEX: the CPU wheel index PyTorch's install page gives (the lean image). Without TORCH_INDEX,
# pip's default index: PyTorch with its CUDA wheels (several GB; run with --gpus all on an NVIDIA host).
# Where the python image cannot be pulled, any Debian-like base with python3 and python3-venv will do
# (scripts/container_base.sh makes one from Debian's packages): --build-arg BASE=localhost/bnscope-base:bookworm.
# Behind a proxy or offline, pip's own settings pass through (podman build -v mounts what they name), e.g.
#   -v /opt/wheels:/wheels:ro --build-arg PIP_FIND_LINKS=/wheels --build-arg TORCH=torch==2.13.0+cpu
ARG PYTHON=3.11
ARG BASE=python:${PYTHON}-slim
FROM ${BASE}

# the lean CPU image: --build-arg TORCH_INDEX="$TORCH_CPU_INDEX", the CPU wheel index from PyTorch's install page
ARG TORCH_INDEX=
ARG TORCH=torch>=2.2
ARG PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/bnscope/bin:$PATH

# a virtual environment: the same on the python image and on Debian's python (which refuses pip, PEP 668)
RUN python3 -m venv /opt/bnscope

# 1. PyTorch alone (the largest layer, rebuilt only when TORCH changes), without its tests and C++
#    headers (~145 MB: the server never builds extensions). An empty TORCH_INDEX: pip's default index.
RUN pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$TORCH" \
    && cd /opt/bnscope/lib/python3*/site-packages/torch && rm -rf test include bin/*Test bin/test_* bin/protoc*

# 2. the other dependencies, read from pyproject.toml: a code change does not reinstall them
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# 3. bnscope itself, as a wheel (no editable install, no source needed at run time)
COPY README.md names.txt ./
COPY app app
COPY models models
COPY static static
COPY templates templates
RUN pip install --no-deps . && cd / && rm -rf /src /tmp/requirements.txt

RUN useradd --create-home --uid 10001 bnscope && mkdir /data && chown bnscope /data
USER bnscope
WORKDIR /home/bnscope
ENV BNSCOPE_DATA_DIR=/data BNSCOPE_HOST=0.0.0.0 BNSCOPE_PORT=8000
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["bnscope", "serve"]
