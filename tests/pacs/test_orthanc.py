"""End to end with real parts: Orthanc (the PACS), DCMTK's storescu (the sender), the node as
`pneumonia dicom-node` runs it, and `pneumonia predict` as the reference; then STOW-RS and
reading a study back from Orthanc's DICOMweb."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from conftest import wait_until
from pacs.conftest import Destination, Orthanc, chest_film, echo, free_port, running_node, send
from pneumonia.pacs.report import read_report


def dcmtk(tool: str) -> str | None:
    """DCMTK's `tool` on PATH, not pynetdicom's Python app of the same name that this
    environment's bin/ also holds (first on PATH in an activated virtual environment)."""
    own = Path(sys.executable).parent.resolve()
    dirs = [
        d for d in os.environ.get("PATH", "").split(os.pathsep) if d and Path(d).resolve() != own
    ]
    return shutil.which(tool, path=os.pathsep.join(dirs))


STORESCU = dcmtk("storescu") or "storescu"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not dcmtk("storescu"), reason="DCMTK is not installed (apt-get install dcmtk)"
    ),
]
CLI = [str(Path(sys.executable).parent / "pneumonia")]  # the installed command
SYNTAXES = {  # file suffix -> (DCMTK encoder, its options; storescu's proposal option)
    "raw": (None, [], []),
    "sv1": ("dcmcjpeg", ["+e1", "+ua"], ["-xs"]),
    "jls": ("dcmcjpls", ["+ua"], ["-xt"]),
    "rle": ("dcmcrle", ["+ua"], ["-xr"]),
    "ext12": ("dcmcjpeg", ["+ee", "+ua"], ["-xx"]),  # JPEG extended, 12-bit samples
    "deflate": ("dcmconv", ["+td"], ["-xd"]),
    "big": ("dcmconv", ["+tb"], ["-xb"]),
}
LABELS = ("PNEUMONIA", "NORMAL")
STUDY = "1.2.826.0.1.3680043.10.1.77"


def archive_films(folder: Path) -> dict[str, list[Path]]:
    """Films as a PACS holds them: 12-bit MONOCHROME2 and 1, each also JPEG Lossless SV1,
    JPEG-LS, RLE, 12-bit JPEG extended, deflated and big endian (a new SOP instance each)."""
    folder.mkdir()
    films: dict[str, list[Path]] = {tag: [] for tag in SYNTAXES}
    for k, photometric in enumerate(["MONOCHROME2", "MONOCHROME1"] * 2):
        raw = chest_film(folder / f"{k}-raw.dcm", seed=k, label=LABELS[k // 2])
        if photometric == "MONOCHROME1":
            ds = dcmread(raw)
            ds.PixelData = (4095 - ds.pixel_array).astype(np.uint16).tobytes()
            ds.PhotometricInterpretation = photometric
            ds.save_as(raw)
        films["raw"].append(raw)
        for tag, (tool, options, _) in SYNTAXES.items():
            if tool:
                out = folder / f"{k}-{tag}.dcm"
                subprocess.run([tool, *options, str(raw), str(out)], check=True, timeout=60)
                if "+ua" not in options:  # dcmconv keeps the UID: make it another instance
                    ds = dcmread(out)
                    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                    ds.save_as(out)
                films[tag].append(out)
    return films


def storescu(port: int, paths: list[Path], options: list[str], calling: str = "ORTHANC") -> int:
    command = [STORESCU, *options, "-aet", calling, "-aec", "PNEUMONIA", "127.0.0.1", str(port)]
    done = subprocess.run([*command, *map(str, paths)], capture_output=True, timeout=120)
    return done.returncode


@contextmanager
def node_process(*args: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`pneumonia dicom-node ... --port PORT` until it answers C-ECHO (as ORTHANC)."""
    process = subprocess.Popen([*CLI, "dicom-node", "--port", str(port), *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_until(lambda: process.poll() is not None or echo(port, "ORTHANC") == 0, 60)
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def srs(orthanc: Orthanc) -> list[Any]:
    found = orthanc.get("/tools/find", {"Level": "Instance", "Query": {"Modality": "SR"}})
    return [dcmread(io.BytesIO(orthanc.file(i))) for i in found]


def cli_predictions(paths: list[Path], out: Path) -> dict[str, dict[str, str]]:
    subprocess.run([*CLI, "predict", *map(str, paths), "-o", str(out)], check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    with (out / "predictions.csv").open() as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def test_orthanc_gets_one_report_per_film_with_the_cli_answer(
    tmp_path: Path, orthanc: Orthanc
) -> None:
    films = archive_films(tmp_path / "films")
    odd = [
        chest_film(tmp_path / "ct.dcm", Modality="CT"),
        chest_film(tmp_path / "lat.dcm", ViewPosition="LL"),
    ]
    broken = chest_film(tmp_path / "broken.dcm")
    ds = dcmread(broken)
    ds.PixelData = ds.PixelData[:64]
    ds.save_as(broken)
    port, log = free_port(), tmp_path / "log.sqlite"
    node_args = ["--ae-title", "PNEUMONIA", "--allow", "ORTHANC", "--store-to",
                 f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", "--log", str(log),
                 "--spool", str(tmp_path / "spool"), "--no-capture"]  # fmt: skip
    with node_process(*node_args, port=port):
        started = time.monotonic()
        for tag, (_, _, proposal) in SYNTAXES.items():  # one association per syntax, none converted
            assert storescu(port, films[tag], proposal) == 0, tag
        storescu(port, [*odd, broken], [])  # the broken one fails its C-STORE
        assert echo(port, "ORTHANC") == 0
        answered = [f for group in films.values() for f in group]
        wait_until(lambda: len(srs(orthanc)) >= len(answered), 120)
        assert time.monotonic() - started < 120
        assert storescu(port, films["raw"], []) == 0  # re-sent: no second report
        assert echo(port, "INTRUDER") is None  # not allowed: rejected
        time.sleep(2)
        reports = srs(orthanc)
    assert len(reports) == len(answered)
    expected = cli_predictions(answered, tmp_path / "predict")
    by_uid = {str(dcmread(p).SOPInstanceUID): (p, dcmread(p).StudyInstanceUID) for p in answered}
    for report in reports:
        said = read_report(report)
        path, study = by_uid[said["source"]]
        row = expected[str(path)]
        assert said["Screening result"] == row["label"]
        assert abs(said["P(PNEUMONIA)"] - float(row["probability"])) <= 0.002
        assert report.StudyInstanceUID == study


def test_stow_rs_delivers_and_predict_reads_a_study_back(
    tmp_path: Path, orthanc: Orthanc, shipped: Any
) -> None:
    films = [chest_film(tmp_path / f"{k}.dcm", seed=k, StudyInstanceUID=STUDY) for k in range(3)]
    films.append(chest_film(tmp_path / "lat.dcm", ViewPosition="LL", StudyInstanceUID=STUDY))
    with running_node(shipped, tmp_path / "spool", [f"{orthanc.url}/dicom-web"]) as node:
        assert send(node.options.port, films) == [0] * 4
        wait_until(lambda: len(srs(orthanc)) == 3, 60)
    for film in films:  # the sources into the archive too, then read back over DICOMweb
        request = urllib.request.Request(
            f"{orthanc.url}/instances", data=film.read_bytes(), method="POST"
        )
        urllib.request.urlopen(request, timeout=10).close()
    url = f"{orthanc.url}/dicom-web/studies/{STUDY}"
    from_archive = cli_predictions([url], tmp_path / "web")  # type: ignore[list-item]
    from_files = cli_predictions(films, tmp_path / "files")
    by_uid = {
        str(dcmread(p).SOPInstanceUID): row
        for p, row in zip(films, from_files.values(), strict=True)
    }
    images = {name: row for name, row in from_archive.items() if name.rsplit("/", 1)[1] in by_uid}
    assert len(images) == 4
    for name, row in images.items():
        reference = by_uid[name.rsplit("/", 1)[1]]
        if row["error"]:
            assert row["error"].startswith("not analysed: view position LL") and not row["label"]
        else:
            assert row["label"] == reference["label"]
            assert abs(float(row["probability"]) - float(reference["probability"])) <= 1e-6
    others = [row for name, row in from_archive.items() if name not in images]  # the SRs
    assert len(others) == 3 and all(
        r["error"].startswith("not analysed: not an image") for r in others
    )


def test_a_node_killed_after_acknowledging_delivers_after_restart(tmp_path: Path) -> None:
    later = Destination("DEST", free_port())  # down while the node is killed
    films = [chest_film(tmp_path / f"{k}.dcm", seed=k) for k in range(3)]
    port = free_port()
    args = ["--allow", "ORTHANC", "--store-to", later.address, "--spool", str(tmp_path / "spool"),
            "--no-capture"]  # fmt: skip
    with node_process(*args, port=port) as process:
        assert send(port, films, calling="ORTHANC") == [0, 0, 0]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    later.start()
    try:
        with node_process(*args, port=port):
            wait_until(lambda: len(later.received) == 3, 60)
    finally:
        later.stop()
    assert {read_report(ds)["source"] for ds in later.received} == {
        dcmread(f).SOPInstanceUID for f in films
    }


def test_orthanc_as_compose_configures_it_routes_films_to_the_node(tmp_path: Path) -> None:
    """deploy/orthanc (compose.yaml's Orthanc): a CR stored into Orthanc goes to the node by
    its Lua route, and the node's report comes back into the film's study; a CT stays put."""
    from pacs.conftest import DICOMWEB_PLUGIN, ORTHANC, start_orthanc

    if not Path(ORTHANC).exists() or not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc is not installed: apt-get install orthanc orthanc-dicomweb")
    deploy = Path(__file__).parents[2] / "deploy" / "orthanc"
    config = json.loads((deploy / "orthanc.json").read_text())
    port = free_port()
    config["DicomModalities"]["pneumonia"] = ["PNEUMONIA", "127.0.0.1", port]  # "node" in compose
    config["LuaScripts"] = [str(deploy / "route.lua")]
    for key in ("StorageDirectory", "IndexDirectory", "HttpPort", "DicomPort", "Plugins",
                "RemoteAccessAllowed"):  # fmt: skip
        config.pop(key)  # the fixture's own: loopback, free ports, a temporary folder
    orthanc, process = start_orthanc(tmp_path / "orthanc", config)
    try:
        args = ["--allow", "ORTHANC", "--store-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}",
                "--spool", str(tmp_path / "spool"), "--no-capture"]  # fmt: skip
        film, ct = chest_film(tmp_path / "cr.dcm"), chest_film(tmp_path / "ct.dcm", Modality="CT")
        with node_process(*args, port=port):
            command = [STORESCU, "-aet", "MODALITY", "-aec", "ORTHANC", "127.0.0.1"]
            subprocess.run(
                [*command, str(orthanc.dicom_port), str(film), str(ct)], check=True, timeout=60
            )
            wait_until(lambda: len(srs(orthanc)) == 1, 60)
        (report,) = srs(orthanc)
    finally:
        process.terminate()
        process.wait(10)
    assert read_report(report)["source"] == dcmread(film).SOPInstanceUID
    assert report.StudyInstanceUID == dcmread(film).StudyInstanceUID
