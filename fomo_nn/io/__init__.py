"""Image I/O and geometry: stands only on fomo_nn.utils (atomic writes, the bad-input error it re-exports)."""
from fomo_nn.utils.errors import BadInputError
from fomo_nn.io.image_io import ImageProperties, read_image, write_image, ras_to_original, file_ending

__all__ = ["BadInputError", "ImageProperties", "read_image", "write_image", "ras_to_original", "file_ending"]
