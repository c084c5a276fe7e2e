from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import Stack


@pytest.fixture(scope="session")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Gateway + one STT worker (packaged multilingual Whisper base) + one translation worker."""
    st = Stack(kafka_bootstrap, Path(tmp_path_factory.mktemp("stack")),
               {"AUDIO_PARTITIONS": "4", "RESULTS_PARTITIONS": "2", "MODEL_SIZE": "base"})
    try:
        gw = st.start_gateway()
        stt = st.start_worker("stt")
        tr = st.start_worker("translate")
        st.wait_healthy([gw, stt, tr], timeout_s=180)
        st.wait_assigned([stt], partitions=4, timeout_s=120)
        yield st
    finally:
        st.stop()
