"""Fault-injection hook for tests: AUTOGLM_TEST_PAUSE_AT=<stage>:<seconds> makes the named stage wait, so a
test can kill a worker or the API at that exact point. Unset in production (then every call returns 0).

Stages: parsing, embedding, embed_batch (before each embedding batch), indexing, segment_written (segment
file on disk, manifest not yet committed), compaction_built (a compaction's merged segment and its sidecar in
its staging directory, the writer lock not yet taken to commit them) in ingest.pipeline; answer (between
streamed answer pieces) in app.answer; upload_checked (an upload's check for the same content made, its row not yet added) in app.uploads.
A leaf module, importable by ingest/.
"""

from __future__ import annotations

import os


def pause_seconds(stage: str) -> float:
    """How long `stage` should wait (0 unless AUTOGLM_TEST_PAUSE_AT names it; 60 s if no duration is given)."""
    name, _, seconds = os.environ.get("AUTOGLM_TEST_PAUSE_AT", "").partition(":")
    return float(seconds or 60) if name == stage else 0.0
