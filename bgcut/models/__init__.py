"""The model zoo: architectures, the registry of named models, and weight loading."""

from . import luma, u2net, unet_lite  # noqa: F401 - imported for their registrations
from ._factory import LoadedModel, count_parameters, create_model
from ._registry import (
    DEFAULT_MODEL,
    build_arch,
    get_pretrained_cfg,
    list_models,
    register_model,
    unregister_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "LoadedModel",
    "build_arch",
    "count_parameters",
    "create_model",
    "get_pretrained_cfg",
    "list_models",
    "register_model",
    "unregister_model",
]
