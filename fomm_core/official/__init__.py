"""The published First Order Motion Model files: import them, export ours in their layout.

``layout`` says how the original tensor names map onto this project's modules, ``config``
how an original YAML maps onto :class:`~fomm_core.model_config.ModelConfig` and the
training sections, ``convert`` reads and writes the files.
"""

from .config import (ORIGINAL_CONVENTIONS, frame_size_from_official, model_config_from_official,
                     official_model_params, train_sections_from_official, unexpressible_conventions)
from .convert import (ImportedCheckpoint, export_checkpoint, import_checkpoint, is_exported_checkpoint,
                      is_exported_config, is_imported_checkpoint, official_tensor_shapes, read_official_config)

__all__ = [
    "ORIGINAL_CONVENTIONS", "ImportedCheckpoint", "export_checkpoint", "frame_size_from_official",
    "import_checkpoint", "is_exported_checkpoint", "is_exported_config", "is_imported_checkpoint",
    "model_config_from_official", "official_model_params", "official_tensor_shapes",
    "read_official_config",
    "train_sections_from_official", "unexpressible_conventions",
]
