"""The First Order Motion Model networks, one file per network (names match the released checkpoints)."""

from ml_core.modules.dense_motion import DenseMotionNetwork
from ml_core.modules.discriminator import MultiScaleDiscriminator
from ml_core.modules.generator import OcclusionAwareGenerator
from ml_core.modules.keypoint_detector import KPDetector

__all__ = ["DenseMotionNetwork", "KPDetector", "MultiScaleDiscriminator", "OcclusionAwareGenerator"]
