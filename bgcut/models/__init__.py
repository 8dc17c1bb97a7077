"""The model zoo: architectures, the registry of named models, and weight loading.

Everything other packages use is imported from here; the ``_*`` modules are its parts:
``_registry`` (names -> configs and architectures), ``_factory`` (``create_model``), ``_hub``
(where weights come from: the package, imports, the Hugging Face cache or a download),
``_weights`` (safetensors and checksums), ``_import`` (other projects' checkpoints) and
``_fuse`` (batch norm folded into convolutions for inference).

The embedded default's weight file ships inside the package (``bgcut/models/weights/``); its
model card, config and training recipe live in the repository's top-level ``weights/`` folder.
"""

from ..config import DEFAULT_MODEL
from . import effnet_unet, luma, u2net, unet_lite  # noqa: F401 - imported for their registrations
from ._factory import LoadedModel, count_parameters, create_model, resolve_cfg
from ._fuse import fuse_conv_bn
from ._hub import imported_dir, local_weights, resolve_weights
from ._import import import_checkpoint
from ._registry import (
    build_arch,
    get_arch,
    get_pretrained_cfg,
    list_models,
    register_model,
)
from ._weights import load_into, read_state_dict, save_tensors, sha256_file

__all__ = [
    "resolve_cfg",
    "DEFAULT_MODEL",
    "LoadedModel",
    "build_arch",
    "count_parameters",
    "create_model",
    "fuse_conv_bn",
    "get_arch",
    "get_pretrained_cfg",
    "import_checkpoint",
    "imported_dir",
    "list_models",
    "load_into",
    "local_weights",
    "read_state_dict",
    "register_model",
    "resolve_weights",
    "save_tensors",
    "sha256_file",
]
