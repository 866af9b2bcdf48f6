# Training image: the pneumonia CLI with every dependency, CPU PyTorch by default.
#   docker build -f dockerfiles/train.Dockerfile -t pneumonia-train .
#   docker run --rm -v "$PWD/../shared/data:/data:ro" -v "$PWD/work:/app/work" \
#       -v "$PWD/runs:/app/runs" pneumonia-train sh -c \
#       "pneumonia data split /data/chest_xray && pneumonia data prepare && pneumonia train"
# For a CUDA build of PyTorch: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
FROM python:3.11.7-slim-bookworm

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 MPLBACKEND=Agg
WORKDIR /app

# 1. dependencies only, from pyproject.toml: this layer is rebuilt only when the pins change
COPY pyproject.toml README.md ./
RUN mkdir -p src/pneumonia && touch src/pneumonia/__init__.py \
 && pip install --extra-index-url "$TORCH_INDEX" . \
 && pip uninstall -y pneumonia && rm -rf src

# 2. the package itself (source, shipped model, configs)
COPY src ./src
COPY configs ./configs
RUN pip install --no-deps . && useradd --create-home pneumonia && chown -R pneumonia /app
USER pneumonia

ENTRYPOINT ["pneumonia"]
CMD ["--help"]
