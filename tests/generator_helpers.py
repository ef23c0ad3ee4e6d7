"""Shared by the reference-generator tests (archisound, discodiff, dac-resynthesis, diffsound, srcgaudio,
audioldm2). Import `one_thread` into a test module to make it apply there (autouse)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is several times faster than
    oversubscribing, and immune to contention from other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def by_key(outputs) -> dict:
    """GeneratedAudio list -> {(prompt_id, sample_index): waveform}, for batch-invariance comparisons."""
    return {(o.prompt_id, o.sample_index): o.waveform for o in outputs}
