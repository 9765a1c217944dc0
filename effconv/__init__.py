"""effconv: efficient convolutional networks of five papers, one training loop, the papers' tables.

Importing the package registers every network with timm.
"""

from effconv import models, ops  # noqa: F401  (registration side effects)

__version__ = "0.1.0"
