"""Which DICOM transfer syntaxes the door decodes, and with which of pydicom's pixel plugins.

An archive stores CR and DX images in many encodings; every one of them below is decoded by
a pydicom pixel-data plugin, pinned in the lean install:

- JPEG baseline and extended (8-bit): Pillow, the same libjpeg-turbo that reads `.jpeg`
  files, so a JPEG wrapped in DICOM reads as the JPEG itself; GDCM otherwise;
- JPEG extended with 12-bit samples: GDCM. pydicom's own GDCM plugin refuses 12-bit JPEG
  Extended, yet python-gdcm decodes it to the same samples as DCMTK's `dcmdjpeg` (the tests
  check it), so `decode_frame` below is that plugin for this one syntax;
- JPEG lossless (process 14, every predictor, SV1 included): GDCM;
- JPEG-LS lossless and near-lossless: pyjpegls (CharLS), GDCM otherwise;
- JPEG 2000 (lossless and lossy) and HTJ2K: pylibjpeg-openjpeg, GDCM otherwise;
- RLE lossless: pylibjpeg-rle, pydicom's own decoder otherwise;
- uncompressed little and big endian, and deflate: pydicom itself.

Why these: all are BSD or MIT licensed (pylibjpeg-libjpeg, the other JPEG lossless decoder,
is GPL-3.0), all install as wheels, and GDCM alone covers every JPEG process. A syntax not in
`SUPPORTED` (MPEG, JPIP references, a private one) is refused with an error that names it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

NATIVE = (
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
)
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
GDCM_12BIT = "gdcm-12bit"
SUPPORTED: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2.4.50": ("pillow", "gdcm"),  # JPEG Baseline (Process 1)
    JPEG_EXTENDED: ("pillow", "gdcm", GDCM_12BIT),  # JPEG Extended (Process 2 and 4)
    "1.2.840.10008.1.2.4.57": ("gdcm",),  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70": ("gdcm",),  # JPEG Lossless, Process 14, Selection Value 1
    "1.2.840.10008.1.2.4.80": ("pyjpegls", "gdcm"),  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": ("pyjpegls", "gdcm"),  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": ("pylibjpeg", "gdcm"),  # JPEG 2000 (Lossless Only)
    "1.2.840.10008.1.2.4.91": ("pylibjpeg", "gdcm"),  # JPEG 2000
    "1.2.840.10008.1.2.4.201": ("pylibjpeg",),  # HTJ2K (Lossless Only)
    "1.2.840.10008.1.2.4.202": ("pylibjpeg",),  # HTJ2K (Lossless, RPCL)
    "1.2.840.10008.1.2.4.203": ("pylibjpeg",),  # HTJ2K
    "1.2.840.10008.1.2.5": ("pylibjpeg", "pydicom"),  # RLE Lossless
    **{uid: ("",) for uid in NATIVE},  # pydicom reads them itself
}
"""Transfer syntax UID -> the pixel plugins tried for it, in order ("": pydicom's choice)."""
DECODER_DEPENDENCIES = {JPEG_EXTENDED: ("gdcm",)}  # what pydicom asks of a plugin module
_registered = False


def syntax_name(uid: str) -> str:
    """A transfer syntax as people know it: pydicom's name and the UID, or the UID alone."""
    from pydicom.uid import UID

    name = UID(uid).name
    return uid if not name or name == uid else f"{name} ({uid})"


def is_available(uid: str) -> bool:
    """Whether this module's plugin can decode `uid` here (pydicom's plugin protocol)."""
    if uid != JPEG_EXTENDED:
        return False
    try:
        import gdcm  # noqa: F401
    except ImportError:
        return False
    return True


def decode_frame(src: bytes, runner: Any) -> bytes:
    """One JPEG Extended frame with 12-bit (or 8-bit) grayscale samples decoded by GDCM: the
    plugin pydicom's GDCM decoder declines for 12 bits (see the module's doc)."""
    import gdcm

    if runner.samples_per_pixel != 1:
        raise ValueError("only grayscale JPEG Extended is decoded by this plugin")
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(element)
    kind = gdcm.PhotometricInterpretation.GetPIType(str(runner.photometric_interpretation))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(kind))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(JPEG_EXTENDED)))
    bits = runner.bits_stored
    image.SetPixelFormat(
        gdcm.PixelFormat(1, runner.bits_allocated, bits, bits - 1, runner.pixel_representation)
    )
    frame: bytes = image.GetBuffer().encode("utf-8", "surrogateescape")
    expected = runner.rows * runner.columns * (runner.bits_allocated // 8)
    if len(frame) != expected:
        raise ValueError(f"GDCM gave {len(frame)} bytes for a frame of {expected}")
    return frame


def register() -> None:
    """Add `decode_frame` to pydicom's JPEG Extended decoder, once."""
    global _registered
    if _registered:
        return
    from pydicom.pixels.decoders import JPEGExtended12BitDecoder

    if GDCM_12BIT not in JPEGExtended12BitDecoder.available_plugins:
        JPEGExtended12BitDecoder.add_plugin(GDCM_12BIT, (__name__, "decode_frame"))
    _registered = True


PLUGIN_MODULES = (
    "pydicom.pixels", *(f"pydicom.pixels.decoders.{m}" for m in ("gdcm", "pillow", "pyjpegls",
    "pylibjpeg", "rle")), "gdcm", "jpeg_ls", "pylibjpeg", "openjpeg", "rle", "PIL.JpegImagePlugin",
)  # fmt: skip


def preload() -> None:
    """Import every decoder now, in this thread: a server decoding in many threads at once
    must not race to import them first (an import cut short there fails that image)."""
    import importlib

    for name in PLUGIN_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            log.debug("pixel plugin module %s is not installed", name)
    register()


def decode_pixels(ds: Any) -> np.ndarray:
    """The stored pixel values of one single-frame dataset, decoded by the first of its
    syntax's plugins that succeeds. Raises ValueError naming the syntax when it is not
    supported, or what each available plugin said when none could decode it."""
    from pydicom.pixels import get_decoder

    meta = getattr(ds, "file_meta", None)
    uid = str(getattr(meta, "TransferSyntaxUID", "") or "1.2.840.10008.1.2")
    if uid not in SUPPORTED:
        raise ValueError(f"transfer syntax {syntax_name(uid)} is not supported")
    register()
    decoder = get_decoder(uid)
    order = SUPPORTED[uid]
    if uid == JPEG_EXTENDED and int(getattr(ds, "BitsStored", 8) or 8) > 8:
        order = (GDCM_12BIT,)  # the others decline 12-bit samples (and log tracebacks)
    plugins = [p for p in order if not p or p in decoder.available_plugins]
    if not plugins:
        raise ValueError(f"no decoder for {syntax_name(uid)} is installed (reinstall pneumonia)")
    failures = []
    for plugin in plugins:
        try:
            return np.asarray(decoder.as_array(ds, decoding_plugin=plugin)[0])
        except Exception as exc:  # every plugin raises its own types
            failures.append(f"{plugin or 'pydicom'}: {_last_line(exc)}")
    raise ValueError(f"{syntax_name(uid)} pixel data could not be decoded ({'; '.join(failures)})")


def _last_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[-1] if lines else type(exc).__name__).strip()[:200]
