"""Reading and writing images and volumes (:mod:`.images`, one reader for PNG/JPEG/TIFF/BMP/DICOM/
NIfTI/NRRD/MHA), the one volume convention (:mod:`.orientation`), DICOM (:mod:`.dicom`), header
checks (:mod:`.headers`), intensity presets (:mod:`.intensity`) and atomic writes (:mod:`.atomic`)."""

from synthfm.io.images import LoadedImage, read_image, read_volume, slice_of, write_mask
from synthfm.io.orientation import radiological_view

__all__ = ["LoadedImage", "radiological_view", "read_image", "read_volume", "slice_of", "write_mask"]
