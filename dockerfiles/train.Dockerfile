# Training image: the pneumonia CLI with every dependency, CPU PyTorch by default.
#   docker build -f dockerfiles/train.Dockerfile -t pneumonia-train .
# The entrypoint is `pneumonia`; run it as yourself so that work/ and runs/ stay yours:
#   mkdir -p work runs
#   train_image() { docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/../shared/data:/data:ro" \
#       -v "$PWD/work:/app/work" -v "$PWD/runs:/app/runs" pneumonia-train "$@"; }
#   train_image data split /data/chest_xray && train_image data prepare && train_image train
# MLflow tracks into runs/mlruns.db (artifacts in runs/mlartifacts).
# For a CUDA build of PyTorch: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
FROM python:3.11.7-slim-bookworm

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 MPLBACKEND=Agg MPLCONFIGDIR=/tmp/matplotlib \
    MLFLOW_TRACKING_URI=sqlite:////app/runs/mlruns.db
WORKDIR /app

# 1. dependencies only, from pyproject.toml: this layer is rebuilt only when the pins change.
#    The placeholder package's build/ goes too: setuptools would reuse its empty __init__.py.
COPY pyproject.toml README.md ./
RUN mkdir -p src/pneumonia && touch src/pneumonia/__init__.py \
 && pip install --extra-index-url "$TORCH_INDEX" ".[train]" \
 && pip uninstall -y pneumonia && rm -rf src build

# 2. the package itself (source, shipped model, configs); matplotlib's font cache is built
#    here, not at every start
COPY src ./src
COPY configs ./configs
RUN pip install --no-deps . && python -c "import matplotlib.font_manager" \
 && chmod 1777 /tmp/matplotlib \
 && useradd --create-home pneumonia && chown -R pneumonia /app
USER pneumonia

ENTRYPOINT ["pneumonia"]
CMD ["--help"]
