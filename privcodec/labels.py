"""Class labels, one spelling for detectors, manual regions and policies: "Traffic light",
" traffic_light " and "traffic light" are all the class ``traffic_light``."""
from __future__ import annotations


def class_label(name: str) -> str:
    return name.strip().lower().replace(" ", "_")
