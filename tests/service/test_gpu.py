"""GPU set-up: memory growth is enabled on every GPU TensorFlow lists (no GPU on the build
machines, so TensorFlow's device listing is stood in for; the calls made are the real API)."""

from __future__ import annotations

import pytest


def test_memory_growth_is_enabled_on_every_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    from app.inference.model import configure_tensorflow

    gpus = [tf.config.PhysicalDevice(name=f"/physical_device:GPU:{index}", device_type="GPU") for index in range(3)]
    grown: list[tuple[str, bool]] = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda device, on: grown.append((device.name, on)))
    monkeypatch.setattr(tf.config.threading, "set_intra_op_parallelism_threads", lambda count: None)
    monkeypatch.setattr(tf.config.threading, "set_inter_op_parallelism_threads", lambda count: None)
    configure_tensorflow(intra_op_threads=1, inter_op_threads=1)
    assert grown == [(gpu.name, True) for gpu in gpus]
