"""Many images at once: any set of zoo models over files, folders, globs or one zip.

- ``inputs``: what a user names -> ``Item``s (zips checked before a member is read).
- ``labels``: label text (folder, CSV) -> class index.
- ``executor``: the one seam for how forwards run (``LocalExecutor`` here; a Ray executor
  in ``ray_executor``), shared by batch and robustness runs.
- ``runner``: the batch run on top of an executor; ``results``: what it gives back.
"""

from .executor import (Executor, Failed, LocalExecutor, Plan, Progress, Sample, Scored, classify_batch,
                       default_batch_size, eta_text)
from .inputs import (MAX_FILE_BYTES, MAX_LABELS_BYTES, MAX_ZIP_ENTRIES, MAX_ZIP_MEMBERS, MAX_ZIP_RATIO,
                     MAX_ZIP_TOTAL, BatchInput, BatchInputError, Item, NoImagesError, Reader, Skipped, ZipMember,
                     attach_labels, decode_seconds, gather, read_labels_csv, read_source, zip_items)
from .labels import LabelIndex, resolve_labels
from .results import (MAX_MATTERED, BatchResult, ImageResult, Mattered, ModelSummary, Tally, csv_header,
                      csv_row, prediction_records)
from .runner import BatchPlan, image_result, run, stream

__all__ = [
    "Executor", "Failed", "LocalExecutor", "Plan", "Progress", "Sample", "Scored", "classify_batch",
    "default_batch_size", "eta_text", "MAX_FILE_BYTES", "MAX_LABELS_BYTES", "MAX_ZIP_ENTRIES", "MAX_ZIP_MEMBERS",
    "MAX_ZIP_RATIO", "MAX_ZIP_TOTAL", "BatchInput", "BatchInputError", "Item", "Reader", "Skipped", "ZipMember",
    "attach_labels", "decode_seconds", "gather", "read_labels_csv", "read_source", "zip_items", "LabelIndex", "resolve_labels",
    "MAX_MATTERED", "BatchResult", "ImageResult", "Mattered", "ModelSummary", "Tally", "csv_header", "csv_row",
    "prediction_records", "BatchPlan", "NoImagesError", "image_result", "run", "stream",
]
