"""The PACS recipe of docs/pacs.md, run end to end on real films, with its figures.

    .venv/bin/python tools/pacs_demo.py ../shared/data/originals --per-class 6 \
        --out reports/pacs-demo

1. starts Orthanc (Debian's, with deploy/orthanc's configuration and Lua route, on loopback
   ports of its own) and `pneumonia dicom-node` (capture on);
2. turns each JPEG into a 12-bit CR (MONOCHROME2, MONOCHROME1 for every other one) and
   compresses it as an archive holds it, with DCMTK: JPEG Lossless SV1, JPEG-LS, RLE;
3. stores every file into Orthanc with storescu (one association per syntax, each file in its
   own syntax); Orthanc routes the CRs to the node, the node's reports come back;
4. checks every report against `pneumonia predict` on the same files, prints the SR tree of one
   (`dsrdump`) and screenshots Orthanc Explorer's study page and the Grad-CAM capture
   (headless Chromium) into --figures.

Needs `apt-get install orthanc orthanc-dicomweb dcmtk chromium`. Nothing is kept but --out.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.uid import generate_uid

from pneumonia.data.renderings import dicom_bytes
from pneumonia.pacs.report import read_report

ROOT = Path(__file__).parents[1]
CLI = str(Path(sys.executable).parent / "pneumonia")
SYNTAXES = {"sv1": (["dcmcjpeg", "+e1", "+ua"], "-xs"), "jls": (["dcmcjpls", "+ua"], "-xt"),
            "rle": (["dcmcrle", "+ua"], "-xr")}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, query: dict | None = None) -> object:
    data = None if query is None else json.dumps(query).encode()
    with urllib.request.urlopen(url, data=data, timeout=10) as answer:
        return json.loads(answer.read())


def films(source: Path, per_class: int, folder: Path) -> dict[str, list[Path]]:
    """12-bit CRs of the first `per_class` JPEGs of each class, in every syntax."""
    made: dict[str, list[Path]] = {"raw": [], **{k: [] for k in SYNTAXES}, "jpeg": []}
    study = generate_uid()
    jpegs = [
        p for c in ("NORMAL", "PNEUMONIA") for p in sorted((source / c).glob("*.jpeg"))[:per_class]
    ]
    for k, jpeg in enumerate(jpegs):
        made["jpeg"].append(jpeg)
        gray = np.asarray(Image.open(jpeg).convert("L")).astype(np.uint16) * 16 + 8
        photometric = "MONOCHROME1" if k % 2 else "MONOCHROME2"
        pixels = 4095 - gray if k % 2 else gray
        header = {"StudyInstanceUID": study, "SeriesInstanceUID": generate_uid(), "Modality": "CR",
                  "PatientID": "DEMO", "PatientName": "Demo^Child", "ViewPosition": "PA",
                  "BodyPartExamined": "CHEST", "PatientAge": "004Y"}  # fmt: skip
        raw = folder / f"{jpeg.stem}-raw.dcm"
        raw.write_bytes(dicom_bytes(pixels, photometric, 12, None, header))
        made["raw"].append(raw)
        for tag, (encoder, _) in SYNTAXES.items():
            out = folder / f"{jpeg.stem}-{tag}.dcm"
            subprocess.run([*encoder, str(raw), str(out)], check=True)
            made[tag].append(out)
    return made


def start(root: Path) -> tuple[subprocess.Popen, subprocess.Popen, str, int]:
    """Orthanc (deploy/orthanc's configuration) and the node, both answering."""
    config = json.loads((ROOT / "deploy/orthanc/orthanc.json").read_text())
    dicom, http, node = free_port(), free_port(), free_port()
    config.update(StorageDirectory=str(root / "db"), IndexDirectory=str(root / "db"),
                  DicomPort=dicom, HttpPort=http, RemoteAccessAllowed=False,
                  LuaScripts=[str(ROOT / "deploy/orthanc/route.lua")])  # fmt: skip
    config["DicomModalities"]["pneumonia"] = ["PNEUMONIA", "127.0.0.1", node]
    (root / "orthanc.json").write_text(json.dumps(config))
    orthanc = subprocess.Popen(["Orthanc", str(root / "orthanc.json")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    node_log = (root / "node.log").open("w")
    dicom_node = subprocess.Popen(
        [CLI, "dicom-node", "--port", str(node), "--allow", "ORTHANC", "--store-to",
         f"ORTHANC@127.0.0.1:{dicom}", "--spool", str(root / "spool"),
         "--log", str(root / "log.sqlite")],
        stdout=node_log, stderr=node_log)  # fmt: skip
    url = f"http://127.0.0.1:{http}"
    for _ in range(300):
        try:
            get(url + "/system")
            if b"Ctrl+C" in (root / "node.log").read_bytes():
                return orthanc, dicom_node, url, dicom
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"Orthanc or the node did not start; see {root}")


def screenshot(url: str, out: Path, size: str = "1280,1120") -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print(f"no chromium: {out.name} not drawn")
        return
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={out}",
                    f"--window-size={size}", "--virtual-time-budget=8000", url],
                   check=True, capture_output=True, timeout=120)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("originals", type=Path)
    parser.add_argument("--per-class", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("reports/pacs-demo"))
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "films").mkdir()
        made = films(args.originals, args.per_class, root / "films")
        orthanc, node, url, dicom = start(root)
        try:
            t0 = time.monotonic()
            for tag, paths in made.items():
                if tag == "jpeg":
                    continue
                option = [SYNTAXES[tag][1]] if tag in SYNTAXES else []
                subprocess.run(["storescu", *option, "-aet", "MODALITY", "-aec", "ORTHANC",
                                "127.0.0.1", str(dicom), *map(str, paths)], check=True)  # fmt: skip
            total = sum(len(p) for tag, p in made.items() if tag != "jpeg")
            while (
                len(get(url + "/tools/find", {"Level": "Instance", "Query": {"Modality": "SR"}}))
                < total
            ):
                if time.monotonic() - t0 > 300:
                    raise SystemExit("not every report came back in 5 minutes; see node.log")
                time.sleep(1)
            elapsed = time.monotonic() - t0
            compare(made, url, root, args.out, elapsed)
            figures(url, args.figures, args.out)
        finally:
            node.terminate()
            orthanc.terminate()
            node.wait(30)
            orthanc.wait(30)


def compare(made: dict[str, list[Path]], url: str, root: Path, out: Path, elapsed: float) -> None:
    """Each report against `pneumonia predict` on the same file, and predict on each DICOM
    against predict on its source JPEG."""
    paths = [p for tag, group in made.items() if tag != "jpeg" for p in group]
    subprocess.run([CLI, "predict", *map(str, paths), *map(str, made["jpeg"]), "-o",
                    str(root / "predict")], check=True, capture_output=True)  # fmt: skip
    with (root / "predict" / "predictions.csv").open() as handle:
        cli = {Path(r["path"]).name: r for r in csv.DictReader(handle)}
    uid_to_name = {str(dcmread(p).SOPInstanceUID): p.name for p in paths}
    rows, worst = [], 0.0
    for instance in get(url + "/tools/find", {"Level": "Instance", "Query": {"Modality": "SR"}}):  # type: ignore[union-attr]
        with urllib.request.urlopen(f"{url}/instances/{instance}/file", timeout=10) as a:
            said = read_report(dcmread(io.BytesIO(a.read())))
        name = uid_to_name[said["source"]]
        delta = abs(said["P(PNEUMONIA)"] - float(cli[name]["probability"]))
        worst = max(worst, delta)
        rows.append((name, said["Screening result"], cli[name]["label"], delta))
    same = sum(r[1] == r[2] for r in rows)
    source = {p.stem: cli[p.name] for p in made["jpeg"]}
    jpeg = {p.name: source[p.stem.rsplit("-", 1)[0]] for p in paths}
    moved = [abs(float(cli[n]["probability"]) - float(jpeg[n]["probability"])) for n in jpeg]
    flips = sum(cli[n]["label"] != jpeg[n]["label"] for n in jpeg)
    errors = sum(bool(cli[p.name]["error"]) for p in paths)
    print(f"predict on the {len(paths)} DICOM files against their {len(source)} JPEGs: {errors} "
          f"errors, {flips} labels changed, max |dp| {max(moved):.2g}")  # fmt: skip
    print(f"{len(rows)} reports for {len(paths)} files in {elapsed:.0f} s; label as predict's: "
          f"{same}/{len(rows)}; max |report P - predict P| {worst:.2g}")  # fmt: skip
    lines = "".join(f"{a},{b},{c},{d:.2g}\n" for a, b, c, d in sorted(rows))
    (out / "reports.csv").write_text("file,report label,predict label,abs dp\n" + lines)


def figures(url: str, folder: Path, out: Path) -> None:
    """dsrdump of one report; Orthanc Explorer's study page and one capture."""
    found = get(url + "/tools/find", {"Level": "Instance", "Query": {"Modality": "SR"}})
    instance = found[0]  # type: ignore[index]
    with urllib.request.urlopen(f"{url}/instances/{instance}/file", timeout=10) as a:
        (out / "report.dcm").write_bytes(a.read())
    tree = subprocess.run(["dsrdump", str(out / "report.dcm")], capture_output=True, text=True)
    (out / "report-tree.txt").write_text(tree.stdout)
    print(tree.stdout)
    study = get(f"{url}/instances/{instance}/study")["ID"]  # type: ignore[index]
    series = len(get(f"{url}/studies/{study}")["Series"])  # type: ignore[index]
    page = f"{url}/app/explorer.html#study?uuid={study}"
    screenshot(page, folder / "pacs-orthanc-study.png", f"1280,{min(2600, 200 + 105 * series)}")
    capture = get(url + "/tools/find", {"Level": "Instance", "Query": {"Modality": "OT"}})[0]  # type: ignore[index]
    with urllib.request.urlopen(f"{url}/instances/{capture}/preview", timeout=30) as a:
        (folder / "pacs-capture.png").write_bytes(a.read())
    print(f"figures: {folder / 'pacs-orthanc-study.png'}, {folder / 'pacs-capture.png'}")


if __name__ == "__main__":
    main()
