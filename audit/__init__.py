"""YOLO label auditor: find what is wrong with a detection dataset and the YOLO11 model on it.

``audit`` holds the pure scoring modules (numpy, pandas, scipy, scikit-learn only);
``audit.data`` is the only package that touches FiftyOne, ultralytics and torch.
"""

from __future__ import annotations

__version__ = "0.1.0"
