# bnscope dashboard. Binding beyond loopback needs an access token:
#   docker build -t bnscope . && docker run -p 8000:8000 -e BNSCOPE_TOKEN=choose-one -v bnscope:/data bnscope
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md names.txt ./
COPY app app
COPY models models
COPY static static
COPY templates templates
RUN pip install --no-cache-dir -e .
ENV BNSCOPE_DATA_DIR=/data BNSCOPE_HOST=0.0.0.0
VOLUME /data
EXPOSE 8000
CMD ["bnscope", "serve"]
