"""The Avro contract (``*.avsc``) shared by every Babelstream service and by outside consumers."""

from importlib import resources
from pathlib import Path

SCHEMA_DIR = Path(str(resources.files(__name__)))
