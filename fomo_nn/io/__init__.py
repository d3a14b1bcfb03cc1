"""Image I/O and geometry: knows nothing else of fomo_nn."""
from fomo_nn.io.errors import BadInputError
from fomo_nn.io.image_io import ImageProperties, read_image, write_image, ras_to_original, file_ending

__all__ = ["BadInputError", "ImageProperties", "read_image", "write_image", "ras_to_original", "file_ending"]
