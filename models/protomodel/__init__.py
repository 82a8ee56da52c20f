"""The SModelS protomodel: the model space (particles, decays, mass bounds, production channels) and
fitted production cross sections (masses in GeV, cross sections in fb)."""

from .space import ProductionChannel, ProtomodelSpace, default_space, load_space
from .xsec import (
    channel_xsec, channel_xsec_tensor, cross_section_tensors, cross_sections, in_table_range, load_fits)

__all__ = [
    "ProductionChannel", "ProtomodelSpace", "channel_xsec", "channel_xsec_tensor", "cross_section_tensors",
    "cross_sections",
    "default_space", "in_table_range", "load_fits", "load_space",
]
