"""A 100,000-row export is streamed, complete and bounded in memory (security.md D4; figure "rows in the
large streamed export").

The seeded world gets 100,000 more students in school A (one bulk insert) and the export cap is
raised above that (``XINSHU_EXPORT_MAX_ROWS``; the default of 10,000 refuses such a file, see
``test_sec_exports.py``). The psychology teacher of school A exports the student list as CSV:
the answer must be a streamed body (a generator, not a buffer), hold every row exactly once and
end with a complete last line; Python's allocations are traced while the request prepares the
file and while the first 20,000 rows stream (tracing the whole file would triple its time).
"""

from __future__ import annotations

import csv
import io
import time
import tracemalloc

import pytest
import security_summary
from sec_world import SCHOOL_A, World, build_world, login
from sqlalchemy import insert

from xinshu.models import Student

ROWS = 100_000
TRACED_ROWS = 20_000
MB = 1024 * 1024


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    built = build_world(tmp_path_factory.mktemp("stream"), config={"XINSHU_EXPORT_MAX_ROWS": 2 * ROWS})
    school, klass = built.ids["unit:sa"], built.ids["unit:sa-7-1"]
    rows = [
        {"school_id": school, "class_id": klass, "name": f"批量学生{i:06d}", "gender": "MF"[i % 2], "grade_level": 7,
         "school_student_no": f"B{i:06d}", "status": "enrolled", "active": True}
        for i in range(ROWS)
    ]  # fmt: skip
    with built.services.db.transaction() as session:
        session.execute(insert(Student), rows)
    yield built
    built.services.db.dispose()


def test_d4_100k_rows_stream_completely_with_bounded_memory(world: World):
    client = login(world.app, "psy_a")
    started = time.monotonic()
    tracemalloc.start()
    try:
        response = client.get("/admin/student/export/csv/", buffered=False)
        _current, prepare_peak = tracemalloc.get_traced_memory()
        assert response.status_code == 200 and response.is_streamed
        chunks = iter(response.response)
        tracemalloc.reset_peak()
        head = []
        lines = 0
        for chunk in chunks:
            head.append(chunk)
            lines += chunk.count(b"\r\n")
            if lines > TRACED_ROWS:
                break
        _current, stream_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    body = b"".join(head) + b"".join(chunks)
    response.close()
    elapsed = time.monotonic() - started
    text = body.decode("utf-8")
    assert text.startswith("\ufeff") and text.endswith("\r\n")  # the last line is complete
    rows = list(csv.reader(io.StringIO(text[1:], newline="")))
    names = [row[3] for row in rows[1:]]
    security_summary.count("export_rows_streamed", len(names))
    # every bulk student once, and school A's four seeded students (sec_world.STUDENTS)
    assert len(names) == ROWS + len(SCHOOL_A)
    assert len(set(names)) == len(names)
    assert {f"批量学生{i:06d}" for i in (0, ROWS // 2, ROWS - 1)} <= set(names)
    assert prepare_peak < 96 * MB, prepare_peak / MB
    assert stream_peak < 32 * MB, stream_peak / MB
    assert elapsed < 60, elapsed
