"""Instances of a study or series read from a DICOMweb archive (QIDO-RS, then WADO-RS).

`pneumonia predict http://pacs:8042/dicom-web/studies/<uid>[/series/<uid>]` lists the
instances with QIDO-RS (a page at a time), retrieves each with WADO-RS into memory (never to
disk) and hands it on with the header rules' verdict (`dicom_rules.refusal`), one at a time,
so that an archive's study of any size streams through. dicomweb-client does the HTTP.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pneumonia.core.errors import DataError, one_line
from pneumonia.data.dicom_rules import AgeRange, refusal

log = logging.getLogger(__name__)
PAGE = 500  # instances per QIDO-RS request
_URL = re.compile(r"^(https?://.+?)/studies/([0-9.]+)(?:/series/([0-9.]+))?/?$")
SOP_INSTANCE, SERIES = "00080018", "0020000E"


@dataclass(frozen=True)
class Target:
    """A study (and maybe one of its series) on a DICOMweb service."""

    base: str
    study: str
    series: str | None = None

    def instance_url(self, series: str, sop: str) -> str:
        """The WADO-RS URL of one instance: how its rows are named."""
        return f"{self.base}/studies/{self.study}/series/{series}/instances/{sop}"


def is_dicomweb(item: str) -> bool:
    """Whether a `predict` input is an http(s) URL (then it must name a study or series)."""
    return item.startswith(("http://", "https://"))


def parse(url: str) -> Target:
    """'…/dicom-web/studies/<uid>[/series/<uid>]' -> Target; a clear error otherwise."""
    match = _URL.match(url.strip())
    if not match:
        raise DataError(
            f"{url}: not a DICOMweb study or series URL "
            "(expected http://host:port/dicom-web/studies/<StudyUID>[/series/<SeriesUID>])"
        )
    return Target(match[1], match[2], match[3])


def _value(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _client(target: Target) -> Any:
    from dicomweb_client.api import DICOMwebClient

    logging.getLogger("dicomweb_client").setLevel(logging.WARNING)  # one line per request
    client = DICOMwebClient(url=target.base)
    client.set_http_retry_params(retry=False)
    return client


def _listing(client: Any, target: Target) -> list[tuple[str, str]]:
    """(series UID, SOP instance UID) of every instance in the target, page by page."""
    found: list[tuple[str, str]] = []
    while True:
        page = client.search_for_instances(
            study_instance_uid=target.study, series_instance_uid=target.series,
            offset=len(found), limit=PAGE, fields=[SERIES, SOP_INSTANCE],
        )  # fmt: skip
        found += [(_value(i, SERIES) or str(target.series), _value(i, SOP_INSTANCE)) for i in page]
        if len(page) < PAGE:
            return found


def instances(url: str, ages: AgeRange | None = None) -> Iterator[tuple[str, Any, str | None]]:
    """(instance URL, dataset or None, why it is not analysed or None) for every instance of
    the study or series at `url`; an instance that cannot be retrieved says why, the others
    go on. Raises DataError when the archive cannot be searched at all."""
    target = parse(url)
    client = _client(target)
    try:
        listing = _listing(client, target)
    except Exception as exc:  # requests' and the server's errors
        raise DataError(f"{url}: the DICOMweb search failed ({one_line(exc)[:200]})") from None
    if not listing:
        raise DataError(f"{url}: the archive has no instances there")
    for series, sop in listing:
        name = target.instance_url(series, sop)
        try:
            ds = client.retrieve_instance(target.study, series, sop)
        except Exception as exc:  # one instance lost is one row, not the run
            yield name, None, f"cannot retrieve the instance ({one_line(exc)[:200]})"
            continue
        why = refusal(ds, ages)
        yield name, (None if why else ds), (f"not analysed: {why}" if why else None)
