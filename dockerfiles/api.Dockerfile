# Service image: `pneumonia serve` on the shipped default model, port 8000, ONNX Runtime.
# The lean install (`pip install .`): no PyTorch, so /explain answers 501 (Grad-CAM needs the
# training install; use the training image, or add the `train` extra, for explanations).
#   docker build -f dockerfiles/api.Dockerfile -t pneumonia-api .
#   python3 -c 'import secrets; print("PNEUMONIA_API_TOKEN=" + secrets.token_urlsafe(32))' > api.env
#   docker run --rm -p 127.0.0.1:8000:8000 --env-file api.env pneumonia-api
# then open http://127.0.0.1:8000/ and give the page the token. It listens on every interface
# of its container, so without a token (PNEUMONIA_API_TOKEN in an env file, or a token file
# named by PNEUMONIA_TOKEN_FILE, e.g. a mounted secret) it refuses to start.
# Another model: mount its bundle (its files readable by user id 1000, or add --user) and
# pass it, e.g.
#   docker run --rm -p 127.0.0.1:8000:8000 --env-file api.env \
#       -v "$PWD/runs/r/bundle:/model:ro" pneumonia-api serve /model --host 0.0.0.0 --port 8000
# (the bundle must carry model.onnx: `pneumonia export BUNDLE --onnx` first)
# Every prediction is logged (no pixels, no file names) to /app/logs/predictions.sqlite, a
# volume: mount one to keep it, e.g. -v "$PWD/logs:/app/logs", and read it with
# `pneumonia monitor logs/predictions.sqlite`.
FROM python:3.11.7-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 MPLBACKEND=Agg MPLCONFIGDIR=/tmp/matplotlib \
    MLFLOW_TRACKING_URI=sqlite:////tmp/mlruns.db
WORKDIR /app

# 1. dependencies only, from pyproject.toml: this layer is rebuilt only when the pins change.
#    The placeholder package's build/ goes too: setuptools would reuse its empty __init__.py.
COPY pyproject.toml README.md ./
RUN mkdir -p src/pneumonia && touch src/pneumonia/__init__.py \
 && pip install . \
 && pip uninstall -y pneumonia && rm -rf src build

# 2. the package with its shipped model (src/pneumonia/assets/default); matplotlib's font
#    cache is built here, not at every start
COPY src ./src
RUN pip install --no-deps . && python -c "import matplotlib.font_manager" \
 && chmod 1777 /tmp/matplotlib \
 && useradd --create-home pneumonia \
 && mkdir -p /app/logs && chown pneumonia /app/logs
USER pneumonia
VOLUME ["/app/logs"]

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
ENTRYPOINT ["pneumonia"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--log", "/app/logs/predictions.sqlite"]
