"""Developer tasks (invoke): each one a thin call of the command the docs give for it.

    .venv/bin/invoke --list        # what there is
    .venv/bin/invoke test          # the README's test command
    .venv/bin/invoke lint          # every pre-commit hook on every file
    .venv/bin/invoke docs --serve  # the documentation site, live

`setup` needs no invoke: it is the README's set-up command, and this file lists it so that
every documented command has a task.
"""

from __future__ import annotations

from invoke import Context, task

VENV = ".venv/bin"
SETUP = "python3.11 -m venv .venv && .venv/bin/pip install --quiet --editable '.[dev]'"
TEST = f"{VENV}/python -m pytest"


@task
def setup(c: Context) -> None:
    """Make .venv and install the project with every extra (the README's set-up)."""
    c.run(SETUP)


@task(
    help={
        "args": "extra pytest arguments, e.g. '-k guard -x'",
        "fast": "leave out the tests marked slow (the development loop)",
    }
)
def test(c: Context, args: str = "", fast: bool = False) -> None:
    """The test suite (the README's test command); --fast is the development loop."""
    marker = " -m 'not slow'" if fast else ""
    c.run(f"{TEST}{marker} {args}".strip())


@task
def lint(c: Context) -> None:
    """ruff, ruff format, mypy and the file checks: every pre-commit hook on every file."""
    c.run(f"{VENV}/pre-commit run --all-files")


@task(help={"serve": "serve the site on http://127.0.0.1:8000 and rebuild on change"})
def docs(c: Context, serve: bool = False) -> None:
    """Build the documentation site into site/ (strict: a broken link fails)."""
    c.run(f"{VENV}/mkdocs {'serve' if serve else 'build --strict'}")


@task
def demo(c: Context) -> None:
    """Every stage on synthetic images, offline (pneumonia demo)."""
    c.run(f"{VENV}/pneumonia demo --force")


@task(
    help={
        "config": "a config file (default: configs/default.yaml's values)",
        "overrides": "key=value ...",
    }
)
def train(c: Context, config: str = "", overrides: str = "") -> None:
    """Train the default recipe, or another config (pneumonia train)."""
    c.run(f"{VENV}/pneumonia train {f'--config {config} ' if config else ''}{overrides}".strip())


@task(help={"bundle": "a bundle folder (default: the shipped model)", "port": "port to listen on"})
def serve(c: Context, bundle: str = "", port: int = 8000) -> None:
    """The web page and API (pneumonia serve)."""
    c.run(f"{VENV}/pneumonia serve {bundle} --port {port}".replace("  ", " "))


@task(help={"image": "api or train"})
def docker(c: Context, image: str = "api") -> None:
    """Build a container image (docs/deployment.md): pneumonia-api or pneumonia-train."""
    c.run(f"docker build -f dockerfiles/{image}.Dockerfile -t pneumonia-{image} .")
