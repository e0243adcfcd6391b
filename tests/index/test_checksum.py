"""Fingerprints of files and model directories."""

from __future__ import annotations

import hashlib
import os

from index.checksum import model_files_key, sha256_file


def test_sha256_file_reads_in_blocks_like_hashlib(tmp_path):
    data = os.urandom(3 << 20 | 17)  # more than one 1 MiB block, and not a whole number of them
    (tmp_path / "w.bin").write_bytes(data)
    assert sha256_file(tmp_path / "w.bin") == hashlib.sha256(data).hexdigest()


def test_a_model_directory_gets_a_new_key_when_its_weights_or_config_change(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "config.json").write_text("{}")
    first = model_files_key(model, "format-1")
    assert model_files_key(model, "format-1") == first and len(first) == 16
    assert model_files_key(model, "format-2") != first  # another format or library version
    (model / "README.md").write_text("notes")  # not a weight or config file
    assert model_files_key(model, "format-1") == first
    (model / "model.safetensors").write_bytes(b"retrained weights")
    retrained = model_files_key(model, "format-1")
    assert retrained != first
    os.utime(model / "config.json", ns=(1, 1))
    assert model_files_key(model, "format-1") != retrained
    assert model_files_key("org/hub-model", "x") == model_files_key("org/hub-model", "x") != model_files_key(
        "org/other-model", "x")
