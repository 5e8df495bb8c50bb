# bnscope dashboard in a container. It binds 0.0.0.0 inside, so it needs an access token:
#   docker build -t bnscope .
#   docker run -p 8000:8000 -e BNSCOPE_TOKEN="$(openssl rand -hex 16)" -v bnscope-data:/data bnscope
# On an NVIDIA host, build with PyTorch's CUDA wheels instead of the CPU ones (and run with --gpus all):
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 -t bnscope:cuda .
ARG PYTHON=3.11
FROM python:${PYTHON}-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

# 1. PyTorch alone (the largest layer, rebuilt only when TORCH_INDEX changes)
RUN pip install --index-url "$TORCH_INDEX" "torch>=2.2"

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
RUN pip install --no-deps . && rm -rf /src/build

RUN useradd --create-home --uid 10001 bnscope && mkdir /data && chown bnscope /data
USER bnscope
WORKDIR /home/bnscope
ENV BNSCOPE_DATA_DIR=/data BNSCOPE_HOST=0.0.0.0 BNSCOPE_PORT=8000
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["bnscope", "serve"]
