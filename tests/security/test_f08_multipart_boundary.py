"""Finding 8: a multipart boundary over 256 characters made the parser raise FormParserError
outside the upload's error handling: a 500 with a traceback in the log.

Reproduced with that boundary and every other framing fault we could think of: each is a 400
naming `file`, no 5xx, no traceback, nothing left on disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.attack import part_files
from support.service import Service
from support.tenants import Tenant, api_log

GOOD_BODY = (
    '--{b}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
    '--{b}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhello\r\n'
    "--{b}--\r\n"
)

CASES = {
    "boundary of 300 characters": ("x" * 300, GOOD_BODY.format(b="x" * 300)),
    "boundary of 257 characters": ("y" * 257, GOOD_BODY.format(b="y" * 257)),
    "empty boundary": ("", GOOD_BODY.format(b="")),
    "quoted empty boundary": ('""', GOOD_BODY.format(b="")),
    "body without any boundary": ("abc", "no multipart here at all"),
    "boundary that never appears": ("abc", GOOD_BODY.format(b="zzz")),
    "headers without a colon": ("b", "--b\r\nnot a header\r\n\r\nhello\r\n--b--\r\n"),
    "binary garbage": ("b", "\x00\xff\xfe" * 1000),
    "no file part": (
        "b",
        '--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nx\r\n--b--\r\n',
    ),
    "forty form fields": (
        "b",
        "".join(
            f'--b\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n' for i in range(40)
        )
        + "--b--\r\n",
    ),
    "non-UTF-8 names": (
        "b",
        '--b\r\nContent-Disposition: form-data; name="file"; filename="\xff\xfe.txt"\r\n\r\nhi\r\n'
        '--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n\xff\r\n--b--\r\n',
    ),
}


@pytest.mark.parametrize(("boundary", "body"), CASES.values(), ids=list(CASES))
def test_bad_framing_is_a_clean_400(
    svc: Service, tenants: tuple[Tenant, Tenant], boundary: str, body: str
) -> None:
    a, _ = tenants
    log_before = len(api_log(svc))
    r = a.http.post(
        "/v1/files",
        content=body.encode("latin-1"),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 400, (r.status_code, r.text)
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    grown = api_log(svc)[log_before:]
    assert "Traceback" not in grown and "FormParserError" not in grown, grown[-2000:]
    assert not part_files(Path(svc.data_dir) / "blobs")


def test_a_normal_boundary_still_uploads(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    r = a.http.post(
        "/v1/files",
        content=GOOD_BODY.format(b="k" * 70).encode(),
        headers={"content-type": f"multipart/form-data; boundary={'k' * 70}"},
    )
    assert r.status_code == 200 and r.json()["bytes"] == 5, r.text
